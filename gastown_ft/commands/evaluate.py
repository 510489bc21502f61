"""(placeholder: filled by the evaluate work)"""


def register(app) -> None:
    pass
