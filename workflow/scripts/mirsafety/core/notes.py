"""How an analysis table says why a statistic is undefined, in its ``note`` column.

Each undefined statistic writes one piece ``"<statistic> n/a: <reason>, <reason>"``; pieces are
joined by ``"; "``. The analysis writes the pieces, and the figures, tables and paper read them
back with :func:`undefined_reason`, so the reason a reader sees is the one the analysis found,
never one guessed downstream. It lives here, below both, so that rendering never needs the
statistics libraries.
"""

#: Joins a statistic's name to the reason it is undefined.
NA = " n/a: "
_SEPARATOR = "; "


def na_piece(statistic: str, reasons) -> str:
    """The note piece saying why ``statistic`` is undefined."""
    return statistic + NA + ", ".join(reasons)


def join_notes(notes) -> str:
    """One note from its pieces (empty ones left out)."""
    return _SEPARATOR.join(n for n in notes if n)


def undefined_reason(note, statistic: str) -> str | None:
    """Why ``note`` (of a correlation, group or LOFO row) says ``statistic`` is n/a, or None
    when it does not say."""
    if not isinstance(note, str):
        return None
    prefix = statistic + NA
    for piece in note.split(_SEPARATOR):
        if piece.startswith(prefix):
            return piece[len(prefix):]
    return None
