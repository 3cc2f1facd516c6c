"""dingdee transformer."""
