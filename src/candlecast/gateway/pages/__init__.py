"""The gateway's web pages: instrument grid (``/``), symbol fan chart (``/symbol/{symbol}``), evaluation
(``/evaluation``), and their static files (``/static/...``).

- ``routes``: the module-level router, page rendering and the HTML error page;
- ``assets``: the page script and stylesheet (``static/``) and Plotly's JS from the ``plotly`` package;
- ``templates/``: Jinja2 templates.

Pages read through the gateway's cache like every other route (``GatewayData``); the page data is the same
cached payload, embedded as JSON.
"""
