"""The gateway's web pages: Jinja2 templates, the page script and stylesheet, and Plotly's JS served from the
``plotly`` package. Pages read through the gateway's cache (``candlecast.gateway.data``)."""
