"""The error every data problem ends in: one exception listing each bad item and its fix."""

MAX_LISTED = 50


class DataError(ValueError):
    """Bad input data. ``problems`` holds one line per item, each naming the item."""

    def __init__(self, headline: str, problems: list[str]):
        self.problems = list(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        if more > 0:
            listed += f"\n  ... and {more} more"
        super().__init__(f"{headline}\n{listed}\nNothing was written.")
