"""Test infrastructure shared by every test layer: the fake OpenAI server, network helpers, the pg_ctl shim."""
