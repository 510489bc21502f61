"""The lexical part of reading a bash command line, shared by the agent policy and the corpus grammar.

`gastown_ft.agent.shell` (what a command line would run, for the policy and the simulated town) and
`gastown_ft.corpus.grammar` (which gt/bd commands a corpus text holds) read the same shell words:
quotes, backslash escapes, line continuations, comments, here-document bodies, `$((...))`, `${...}`,
`$(...)` and backticks. `ShellScanner` reads those in one place; each caller subclasses it for what
it builds (a command tree, or a flat list of gt/bd commands) and for the few constructs it reads
differently (the grammar keeps `<placeholder>` and `{{template}}` words; the policy marks words whose
value the shell computes). Problems never raise: they go to the subclass's `error` hook.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REDIRECT = re.compile(r"(\d*)(&>>|&>|>>|>&|>\||<<<|<<-|<<|<&|<>|>|<)")
FD_DUP = re.compile(r"\d+-?|-")  # the target of `>&` / `<&` when it names a descriptor
WORD_BREAK = frozenset(" \t\r\n;&|()<>")


class ShellScanner:
    """A cursor over a shell text and the word-level constructs both callers read alike.

    Subclasses provide `parse_list` (a list of commands up to a closing character) and may override
    the hooks: `error`, `special_piece`, `expansion`, `plain_char`, `unclosed_quote`.
    `ctx` is the caller's command object, passed through to the hooks untouched.
    """

    # Bash joins `\<newline>` inside double quotes too; the policy keeps it (its words go to shlex).
    joins_continuation_in_quotes = True

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- hooks -------------------------------------------------------------------------------------
    def parse_list(self, end: str | None, ctx: Any) -> Any:
        raise NotImplementedError

    def error(self, message: str, ctx: Any) -> None:
        """A construct the scanner could not balance."""

    def special_piece(self, end: str | None, ctx: Any) -> str | None:
        """A caller-specific construct at the cursor (checked before word breaks), or None."""
        return None

    def expansion(self, ctx: Any, quoted: bool) -> str | None:
        """The word piece of a `$` or backtick construct at the cursor, or None to read it as a character."""
        return None

    def plain_char(self, word_start: int) -> str:
        c = self.text[self.pos]
        self.pos += 1
        return c

    def unclosed_quote(self, source: str, quote: str, ctx: Any) -> str:
        """What an unbalanced quote at the end of the text contributes to its word."""
        self.error("unbalanced single quote" if quote == "'" else "unbalanced double quote", ctx)
        return source

    # -- blanks and comments -----------------------------------------------------------------------
    def skip_blank(self) -> bool:
        """Step over one blank or line continuation; False when the cursor is at neither."""
        t = self.text
        if t[self.pos] in " \t\r":
            self.pos += 1
            return True
        if t.startswith("\\\n", self.pos):
            self.pos += 2
            return True
        return False

    def next_char(self, end: str | None) -> str | None:
        """The character at the cursor after blanks and continuations; None at the text's end or `end`."""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if end is not None and c == end:
                return None
            if not self.skip_blank():
                return c
        return None

    def skip_comment(self) -> None:
        nl = self.text.find("\n", self.pos)
        self.pos = len(self.text) if nl < 0 else nl

    def heredoc_lines(self, is_end: Callable[[str], bool]) -> tuple[list[str], bool]:
        """The lines of a here-document body up to its delimiter line, and whether that line came."""
        t = self.text
        lines: list[str] = []
        while self.pos < len(t):
            nl = t.find("\n", self.pos)
            line = t[self.pos : len(t) if nl < 0 else nl]
            self.pos = len(t) if nl < 0 else nl + 1
            if is_end(line):
                return lines, True
            lines.append(line)
        return lines, False

    # -- words -------------------------------------------------------------------------------------
    def word(self, end: str | None, ctx: Any) -> str:
        """One shell word's source from the cursor, with the pieces the hooks chose for expansions."""
        t = self.text
        out: list[str] = []
        start = self.pos
        while self.pos < len(t):
            c = t[self.pos]
            piece = self.special_piece(end, ctx)
            if piece is not None:
                out.append(piece)
                continue
            if c in WORD_BREAK or (end is not None and c == end):
                break
            if c == "'":
                close = t.find("'", self.pos + 1)
                if close < 0:
                    out.append(self.unclosed_quote(t[self.pos :], "'", ctx))
                    self.pos = len(t)
                    break
                out.append(t[self.pos : close + 1])
                self.pos = close + 1
            elif c == '"':
                out.append(self.double_quoted(ctx))
            elif c == "\\":
                if not t.startswith("\n", self.pos + 1):
                    out.append(t[self.pos : self.pos + 2])
                self.pos += 2
            else:
                piece = self.expansion(ctx, quoted=False)
                out.append(piece if piece is not None else self.plain_char(start))
        return "".join(out)

    def double_quoted(self, ctx: Any) -> str:
        t = self.text
        out = ['"']
        self.pos += 1
        while self.pos < len(t):
            c = t[self.pos]
            if c == '"':
                self.pos += 1
                out.append('"')
                return "".join(out)
            if c == "\\":
                if not (self.joins_continuation_in_quotes and t.startswith("\n", self.pos + 1)):
                    out.append(t[self.pos : self.pos + 2])
                self.pos += 2
                continue
            piece = self.expansion(ctx, quoted=True)
            if piece is None:
                piece = c
                self.pos += 1
            out.append(piece)
        return self.unclosed_quote("".join(out), '"', ctx)

    # -- nested constructs -------------------------------------------------------------------------
    def enclosed(self, closer: str, ctx: Any, what: str) -> Any:
        """The command list up to `closer` (the cursor is just inside the opener); steps over the closer."""
        inner = self.parse_list(closer, ctx)
        if self.pos < len(self.text):
            self.pos += 1
        else:
            self.error(f"unclosed {what} substitution", ctx)
        return inner

    def balanced(self, opener: str, closer: str) -> bool:
        """Step over `$((...))` or `${...}` from its `$`, nesting counted; whether it was closed."""
        t = self.text
        depth = 0
        i = self.pos + 1
        while i < len(t):
            if t.startswith(opener, i):
                depth += 1
                i += len(opener)
            elif t.startswith(closer, i):
                depth -= 1
                i += len(closer)
                if depth == 0:
                    self.pos = i
                    return True
            else:
                i += 1
        self.pos = i
        return False
