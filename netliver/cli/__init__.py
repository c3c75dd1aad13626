"""``netliver``: the command line of the gateway's operations (installed by ``pip install``)."""
