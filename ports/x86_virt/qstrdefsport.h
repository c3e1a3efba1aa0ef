// qstrs specific to this port (most are found automatically in the sources).
// The strings behind MP_QSTR_ names that are not identifiers.
Q(.frozen)
Q(/lib)
Q(/)
