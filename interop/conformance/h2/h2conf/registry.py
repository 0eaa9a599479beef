"""The list of cases: each is a function registered under an RFC section with `case`."""

CASES = []


class Case:
    def __init__(self, ident, title, fn):
        self.ident = ident
        self.title = title
        self.fn = fn


def case(section, title):
    """Register `fn(target) -> Outcome` as the next case of `section` ("http2/6.5.2")."""

    def register(fn):
        n = sum(1 for c in CASES if c.ident.rsplit("/", 1)[0] == section) + 1
        CASES.append(Case(f"{section}/{n}", title, fn))
        return fn

    return register
