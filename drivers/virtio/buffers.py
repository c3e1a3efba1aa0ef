# What a driver accepts as a buffer: any object with the buffer protocol
# (bytes, bytearray, memoryview, array of any typecode), counted in bytes,
# never in elements. Anything else, and str (text has no byte layout of its
# own), is refused with a TypeError that names the type.


def byte_length(buf, what, *args):
    """The length in bytes of `buf`, or TypeError naming its type. The
    error's text starts with `what`, or with `what % args` when args are
    given: formatted only for an error, since a str built on MicroPython is
    looked up among every interned string first (~17k instructions here),
    too dear for a per-frame or per-request path."""
    t = type(buf)
    if t is bytes or t is bytearray:
        return len(buf)
    if t is memoryview:                 # (one-dimensional, on MicroPython always)
        return len(buf) * buf.itemsize
    if isinstance(buf, (bytes, bytearray)):
        return len(buf)
    if isinstance(buf, str):
        raise TypeError('%s: a str is not a buffer of bytes (encode it first)'
                        % _context(what, args))
    try:
        view = memoryview(buf)
    except TypeError:
        name = type(buf).__name__
        raise TypeError('%s: %s %s is not a buffer (bytes, bytearray, memoryview or array)'
                        % (_context(what, args), 'an' if name[:1] in 'aeiouAEIOU' else 'a', name))
    return len(view) * view.itemsize


def _context(what, args):
    return what % args if args else what


def byte_view(buf):
    """A memoryview of buf's bytes, for slicing by byte offsets (the bounce
    copies of the host; memory on the target is reached by address)."""
    view = memoryview(buf)
    if hasattr(view, 'cast') and view.format != 'B':
        view = view.cast('B')
    return view
