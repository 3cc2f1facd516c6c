"""dingdee sandbox."""
