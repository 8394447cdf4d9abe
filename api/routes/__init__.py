"""One module per resource; handlers only translate between HTTP and ``scheduler``."""
