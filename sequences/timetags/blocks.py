"""Tag blocks live in `instruments.tag_blocks`: the TimeTagger role returns them, and the
instruments layer may not import sequences. Re-exported here for the processing code."""

from qnetlab.instruments.tag_blocks import TagBlock, TagBlockError

__all__ = ["TagBlock", "TagBlockError"]
