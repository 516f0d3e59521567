"""The browser UI: server-rendered pages, static assets, and Plotly served from its Python package."""
