"""dingdee loader."""
