"""(placeholder: filled by the peer work)"""


def register(app) -> None:
    pass
