"""One module per runtime backend."""
