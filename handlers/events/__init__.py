"""Azure ML events in, typed frozen values out (import-light: nothing is imported here).

    types.py        the envelope, the five event types (run events share RunEvent), constants
    fields.py       the case-insensitive reader that collects every problem before raising
    event_grid.py   a dict in Event Grid schema -> envelope
    cloud_event.py  a dict in CloudEvents 1.0 -> envelope
    binding.py      what a trigger is handed (func.EventGridEvent, func.CloudEvent, dict, JSON)
    batch.py        a delivery body -> its events
    salvage.py      what can be read from an event too malformed to parse (ledger row and key)
    monitor.py      the v2 model-monitor breach a RunStatusChanged carries in its run tags
    parse.py        the public API: parse_envelope, parse_data, parse_event, and re-exports
    workspace.py    the workspace a topic names
"""
