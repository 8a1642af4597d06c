"""amlevents handlers: typed events, dispatch, ledger and the actions they drive.

Nothing in this package imports an Azure SDK at module level; adapters import lazily.
"""
