"""Reports from a results store: aggregation over seeds, figures (PNG + SVG) and one HTML page."""
