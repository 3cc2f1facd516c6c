"""dingdee extractor."""
