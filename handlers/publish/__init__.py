"""amlevents' own outcome events (`amlevents.*` CloudEvents) on an Event Grid topic.

catalogue.py decides which event a finished ledger row becomes (pure); publish.py publishes it
once, through handlers/adapters/outcome_topic.py, and again on a redelivery if the topic was down;
settings.py owns the AMLEVENTS_OUTCOME_* settings. Nothing here imports an Azure SDK.
"""
