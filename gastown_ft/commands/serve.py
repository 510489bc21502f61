"""(placeholder: filled by the serve work)"""


def register(app) -> None:
    pass
