"""Data: camera conventions, dataset parsers, datasets and the multi-scene DataManager."""
