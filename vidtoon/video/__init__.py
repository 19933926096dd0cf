"""Video input/output with PyAV: reading (:mod:`.reader`), encoding (:mod:`.writer`), audio and subtitle
tracks (:mod:`.remux`) and what each output container holds (:mod:`.containers`)."""
