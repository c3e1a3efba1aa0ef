// qstrs specific to this port (most are found automatically in the sources).
