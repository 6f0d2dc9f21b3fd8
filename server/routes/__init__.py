"""The API's routers: health, conversations (and their messages), runs, the OpenAI-compatible facade."""
