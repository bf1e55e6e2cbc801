"""Insights on the ledger: attribution and shared-cost allocation, forecasts, anomalies, exports.

Pure and synchronous like the rest of the domain core: functions take rows already read from the ledger
(see :mod:`margin.store`) and return results; the CLI, the gateway and the dashboard are the edges.
"""
