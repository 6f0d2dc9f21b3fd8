"""Burrow's Streamlit pages. Thin: they read settings, call `core` and render."""
