# json: MicroPython's names (dumps, dump, loads, load), for the image, whose
# MicroPython source has no extmod/ (where the C one lives). RFC 8259: objects,
# arrays, strings (with \uXXXX escapes, surrogate pairs), numbers, true,
# false, null. dumps writes ", " and ": " separators, as MicroPython does.


def dumps(obj, separators=None):
    item_sep, key_sep = separators if separators else (", ", ": ")
    out = []
    _dump(obj, out, item_sep, key_sep)
    return "".join(out)


def dump(obj, stream, separators=None):
    stream.write(dumps(obj, separators))


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(s):
    out = ['"']
    for c in s:
        e = _ESCAPES.get(c)
        if e is None and ord(c) < 0x20:
            e = "\\u%04x" % ord(c)
        out.append(e or c)
    out.append('"')
    return "".join(out)


def _dump(obj, out, item_sep, key_sep):
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(_string(obj))
    elif isinstance(obj, (int, float)):
        out.append(repr(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(item_sep)
            _dump(v, out, item_sep, key_sep)
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        for i, (k, v) in enumerate(obj.items()):
            if i:
                out.append(item_sep)
            if not isinstance(k, str):
                raise TypeError("dict keys must be str")
            out.append(_string(k))
            out.append(key_sep)
            _dump(v, out, item_sep, key_sep)
        out.append("}")
    else:
        raise TypeError("%s is not JSON serializable" % type(obj).__name__)


def load(stream):
    return loads(stream.read())


def loads(s):
    if isinstance(s, (bytes, bytearray)):
        s = s.decode()
    p = _Parser(s)
    value = p.value()
    p.space()
    if p.i != len(s):
        p.fail("extra data")
    return value


_WS = " \t\n\r"
_NUMBER = "+-0123456789.eE"
_UNESCAPE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Parser:
    def __init__(self, s):
        self.s = s
        self.i = 0

    def fail(self, what):
        raise ValueError("syntax error in JSON: %s at %d" % (what, self.i))

    def space(self):
        s, i = self.s, self.i
        while i < len(s) and s[i] in _WS:
            i += 1
        self.i = i

    def value(self):
        self.space()
        s = self.s
        if self.i >= len(s):
            self.fail("unexpected end")
        c = s[self.i]
        if c == "{":
            return self.object()
        if c == "[":
            return self.array()
        if c == '"':
            return self.string()
        for word, v in (("true", True), ("false", False), ("null", None)):
            if s.startswith(word, self.i):
                self.i += len(word)
                return v
        return self.number()

    def expect(self, c):
        self.space()
        if self.s[self.i:self.i + 1] != c:
            self.fail("expected '%s'" % c)
        self.i += 1

    def object(self):
        self.i += 1
        d = {}
        self.space()
        if self.s[self.i:self.i + 1] == "}":
            self.i += 1
            return d
        while True:
            self.space()
            if self.s[self.i:self.i + 1] != '"':
                self.fail("expected a key")
            k = self.string()
            self.expect(":")
            d[k] = self.value()
            self.space()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == "}":
                return d
            if c != ",":
                self.fail("expected ',' or '}'")

    def array(self):
        self.i += 1
        a = []
        self.space()
        if self.s[self.i:self.i + 1] == "]":
            self.i += 1
            return a
        while True:
            a.append(self.value())
            self.space()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == "]":
                return a
            if c != ",":
                self.fail("expected ',' or ']'")

    def string(self):
        s = self.s
        i = self.i + 1
        out = []
        while True:
            j = i
            while j < len(s) and s[j] != '"' and s[j] != "\\":
                j += 1
            out.append(s[i:j])
            if j >= len(s):
                self.i = j
                self.fail("unterminated string")
            if s[j] == '"':
                self.i = j + 1
                return "".join(out)
            c = s[j + 1:j + 2]
            if c == "u":
                code = int(s[j + 2:j + 6], 16)
                i = j + 6
                if 0xD800 <= code < 0xDC00 and s[i:i + 2] == "\\u":
                    low = int(s[i + 2:i + 6], 16)
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                out.append(chr(code))
            elif c in _UNESCAPE:
                out.append(_UNESCAPE[c])
                i = j + 2
            else:
                self.i = j
                self.fail("bad escape")

    def number(self):
        s = self.s
        j = self.i
        while j < len(s) and s[j] in _NUMBER:
            j += 1
        text = s[self.i:j]
        if not text:
            self.fail("unexpected character")
        self.i = j
        try:
            if "." in text or "e" in text or "E" in text:
                return float(text)
            return int(text)
        except ValueError:
            self.fail("bad number")
