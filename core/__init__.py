"""Burrow's core: the Burr chat application, its storage and its model client. Never imports Streamlit."""
