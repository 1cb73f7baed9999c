"""Find an exercise's solution anywhere in a student copy, even with its variables renamed.

A solution block (between `# BEGIN EXERCISE k` and `# END EXERCISE k`) is cut into tokens with its
comments removed; every name that is not a keyword, an attribute (after '.') or a called function is
replaced by a placeholder numbered by first appearance, so `alpha * eps - sigma * x0` and
`a * e - s * x` read the same. Three kinds of evidence count as a leak (fingerprints()):
  - a statement of the solution, or its value (after `return` or `=`), names and all, anywhere: at
    least LINE_TOKENS tokens with arithmetic, or twice as many without;
  - WINDOW consecutive tokens of the solution (statements joined, so a window spans lines), names
    replaced as above, anywhere, if the window holds arithmetic (telling());
  - a value of LINE_TOKENS + 2 to WINDOW tokens, names replaced, that holds arithmetic.
Every text file is read: code and tests, results, docs, and the code cells of notebooks. A one-line
product sum such as `alpha * y0 + sigma * eps` is the equation the student page states, so with names
replaced it cannot tell the answer from its question: such exercises are caught with their own names.
"""
import json
import keyword
import os
import re

LINE_TOKENS = 6
WINDOW = 12
ARITHMETIC = {"*", "+", "-", "/", "**", "@", "//"}
PUNCTUATION = {",", "(", ")", "[", "]", ";", ".", ":"}
TOKEN = re.compile(r"[A-Za-z_]\w*|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?"
                   r"|\*\*|//|==|!=|<=|>=|->|[-+*/%@()\[\]{},.:<>=~&|^]")
TEXT = (".py", ".md", ".txt", ".sh", ".ipynb", ".cfg", ".ini", ".toml", ".yml", ".yaml", ".rst")


def statements(text: str) -> list:
    """Lines of code without comments (a '#' outside a string starts one), blank lines dropped."""
    out = []
    for line in text.split("\n"):
        line = re.sub(r"#(?=(?:[^'\"]|'[^']*'|\"[^\"]*\")*$).*", "", line).strip()
        if line:
            out.append(line)
    return out


def kinds(tokens: list) -> list:
    """Per token: None for a name that renaming can change, else the token itself (keywords, attributes
    after '.', called functions, numbers and operators)."""
    out = []
    for i, tok in enumerate(tokens):
        is_name = tok[0].isalpha() or tok[0] == "_"
        after_dot = i > 0 and tokens[i - 1] == "."
        called = i + 1 < len(tokens) and tokens[i + 1] == "("
        out.append(None if is_name and not keyword.iskeyword(tok) and not after_dot and not called else tok)
    return out


def normalised(tokens: list, kind: list, start: int, n: int) -> tuple:
    """tokens[start:start + n] with names -> placeholders numbered by first appearance in the span (so a
    span's prefix normalises to the prefix of its normal form)."""
    names, out = {}, []
    for j in range(start, min(start + n, len(tokens))):
        out.append(kind[j] if kind[j] is not None else "$%d" % names.setdefault(tokens[j], len(names)))
    return tuple(out)


def telling(tokens: tuple, content_needed: int = 4) -> bool:
    """Tokens that say something: two arithmetic operators and four tokens that are neither names nor
    punctuation (an argument list or an idiom such as `.mean(dim=(2, 3))` is not a solution)."""
    content = [t for t in tokens if t[0] != "$" and t not in PUNCTUATION]
    return sum(t in ARITHMETIC for t in tokens) >= 2 and len(content) >= content_needed


def expression(tokens: list) -> int:
    """Where a statement's value starts: after `return` or its first `=` (0 otherwise)."""
    if tokens[:1] == ["return"]:
        return 1
    return tokens.index("=") + 1 if "=" in tokens else 0


def stream(text: str) -> list:
    """The tokens of a text's statements, each statement ended by ';'."""
    return [tok for s in statements(text) for tok in TOKEN.findall(s) + [";"]]


def fingerprints(block: str):
    """(exact, renamed): token tuples to find as they are (statements and their values of at least
    LINE_TOKENS tokens, with arithmetic or twice as long) and with names replaced (WINDOW-token windows,
    and values of LINE_TOKENS + 2 to WINDOW tokens, that are telling)."""
    toks, exact, renamed = stream(block), set(), set()
    kind = kinds(toks)
    start = 0
    while start < len(toks):
        end = toks.index(";", start)
        value = start + expression(toks[start:end])
        for first in (start, value):
            t = tuple(toks[first:end])
            if len(t) >= 2 * LINE_TOKENS or len(t) >= LINE_TOKENS and ARITHMETIC & set(t):
                exact.add(t)
        if LINE_TOKENS + 1 < end - value <= WINDOW:  # a longer value is covered by its windows
            v = normalised(toks, kind, value, end - value)
            if telling(v, 3):
                renamed.add(v)
        start = end + 1
    for i in range(len(toks) - WINDOW + 1):
        w = normalised(toks, kind, i, WINDOW)
        if telling(w):
            renamed.add(w)
    return exact, renamed


def readable(path: str) -> str:
    """A file's text to search: a notebook's code cells, any other text file whole, '' otherwise."""
    try:
        text = open(path, encoding="utf-8").read()
    except (UnicodeDecodeError, OSError):
        return ""
    if path.endswith(".ipynb"):
        try:
            cells = json.loads(text)["cells"]
        except (ValueError, KeyError, TypeError):
            return text
        return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in cells if c.get("cell_type") == "code")
    return text


def find(blocks: dict, folder: str) -> list:
    """[(exercise, file, what was found)] for blocks {exercise: [solution block text]} in every text
    file under folder."""
    prints = {k: [fingerprints(b) for b in bs] for k, bs in blocks.items()}
    starts = {}  # first token -> the lengths of the exact fingerprints that begin with it
    for fps in prints.values():
        for ex, _ in fps:
            for t in ex:
                starts.setdefault(t[0], set()).add(len(t))
    renamed_lengths = {len(t) for fps in prints.values() for _, rn in fps for t in rn}
    longest = max(renamed_lengths, default=0)
    hits = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", ".venv")]
        for name in sorted(names):
            if not name.endswith(TEXT):
                continue
            path = os.path.join(root, name)
            toks = stream(readable(path))
            kind = kinds(toks)
            grams = set()
            renamed = {n: set() for n in renamed_lengths}
            for i in range(len(toks)):
                grams.update(tuple(toks[i:i + n]) for n in starts.get(toks[i], ()))
                full = normalised(toks, kind, i, longest)
                for n in renamed_lengths:
                    if len(full) >= n:
                        renamed[n].add(full[:n])
            for k, fps in prints.items():
                found = set()
                for exact, rn in fps:
                    found |= {" ".join(t) for t in exact if t in grams}
                    found |= {"renamed: " + " ".join(t) for t in rn if t in renamed[len(t)]}
                hits += [(k, os.path.relpath(path, folder), f) for f in sorted(found)[:3]]
    return hits
