"""(placeholder: filled by the models work)"""


def register(app) -> None:
    pass
