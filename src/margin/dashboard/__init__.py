"""The web dashboard (served by the gateway at ``/dashboard``) and the self-contained HTML reports of
``margin report ... --html``: the same pages, rendered from the same page models.

Modules, one job each: ``_data`` (page models from ledger reads, pure), ``_charts`` (plotly figures as
dicts, pure), ``_render`` (HTML, every interpolated value escaped), ``_assets`` (plotly.min.js and the chart
loader from installed packages), ``_auth`` (dashboard keys and session cookies), ``_reads`` (what each page
reads from the ledger), ``routes`` (the gateway's Starlette routes) and ``report`` (HTML report files).
"""
