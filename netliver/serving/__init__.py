"""How netliver's WSGI apps are served by gunicorn: its configuration and its error answers."""
