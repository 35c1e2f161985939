"""The ``rwi-etl`` command line: the composition root that wires settings into every part."""
