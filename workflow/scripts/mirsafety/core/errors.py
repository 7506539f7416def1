"""The error every data problem ends in: one exception listing each bad item and its fix."""

MAX_LISTED = 50


class DataError(ValueError):
    """Bad input data. ``problems`` holds one line per item, each naming the item."""

    def __init__(self, headline: str, problems: list[str]):
        self.headline = headline
        self.problems = list(problems)
        super().__init__(f"{self.listing(MAX_LISTED)}\nNothing was written.")

    def listing(self, limit: int) -> str:
        """The headline and the first ``limit`` problems, then how many more there are (the
        console shows a few, the log many)."""
        listed = "\n".join(f"  - {p}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        if more > 0:
            listed += f"\n  ... and {more} more"
        return f"{self.headline}\n{listed}"
