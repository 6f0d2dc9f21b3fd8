"""Export and import of conversations: Burrow JSON (docs/export-format.md), Markdown, the OpenAI
`messages` list, ChatGPT's conversations.json, and .zip archives of Burrow JSON files.

`TransferMixin` (service.py) adds the facade methods to ChatService; the readers and writers here
never touch storage themselves.
"""
from core.transfer.model import FORMAT, VERSION
from core.transfer.service import EXPORT_FORMATS, TransferMixin

__all__ = ["EXPORT_FORMATS", "FORMAT", "TransferMixin", "VERSION"]
