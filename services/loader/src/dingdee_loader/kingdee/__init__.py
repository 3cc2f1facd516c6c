"""The Kingdee K3Cloud WebAPI adapter: signing, sessions, BatchSave and existence queries."""
