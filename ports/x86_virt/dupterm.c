// A second terminal: x86.dupterm(stream), in the spirit of MicroPython's
// os.dupterm (extmod/, which the tree we build from lacks). While a stream is
// attached, everything the REPL prints also goes to stream.write(buf), and
// what it reads also comes from stream.readinto(buf), which must not block
// (None: nothing there). A virtio console port is such a stream:
//
//     x86.dupterm(virtio.find('console').console())
//
// A stream that raises is detached and the error printed on COM1; a
// KeyboardInterrupt raised while it runs passes on to the program.
#include "py/gc.h"
#include "py/objarray.h"
#include "py/runtime.h"
#include "x86.h"

#define DUPTERM_RX_SIZE 64      // bytes asked of readinto() at a time

typedef struct _dupterm_obj_t {
    mp_obj_base_t base;
    mp_obj_t stream;
    mp_obj_t rx_buf;            // a bytearray over rx, handed to readinto()
    uint16_t rx_len, rx_pos;    // bytes in rx, bytes already returned
    uint8_t rx[DUPTERM_RX_SIZE];
} dupterm_obj_t;

static MP_DEFINE_CONST_OBJ_TYPE(dupterm_type, MP_QSTR_dupterm, MP_TYPE_FLAG_NONE);

// The attached terminal lives in the root pointer, so the GC keeps it.
MP_REGISTER_ROOT_POINTER(struct _dupterm_obj_t *x86_dupterm);
#define DUPTERM MP_STATE_VM(x86_dupterm)

static bool busy;               // the stream is running: its own output stays on COM1

void dupterm_reset(void) {
    DUPTERM = NULL;
    busy = false;
}

bool dupterm_attached(void) {
    return DUPTERM != NULL;
}

// Call stream.write(str[:len]), or stream.readinto(rx) when str is NULL;
// returns what it returned, or MP_OBJ_NULL after detaching a failed stream.
static mp_obj_t call_stream(dupterm_obj_t *d, const char *str, size_t len) {
    mp_obj_t result = MP_OBJ_NULL;
    nlr_buf_t nlr;
    busy = true;
    if (nlr_push(&nlr) == 0) {
        mp_obj_t dest[3];
        if (str != NULL) {
            mp_load_method(d->stream, MP_QSTR_write, dest);
            dest[2] = mp_obj_new_bytearray_by_ref(len, (void *)str);
        } else {
            mp_load_method(d->stream, MP_QSTR_readinto, dest);
            dest[2] = d->rx_buf;
        }
        result = mp_call_method_n_kw(1, 0, dest);
        nlr_pop();
        busy = false;
        return result;
    }
    busy = false;
    mp_obj_t exc = MP_OBJ_FROM_PTR(nlr.ret_val);
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)),
        MP_OBJ_FROM_PTR(&mp_type_KeyboardInterrupt))) {
        nlr_jump(nlr.ret_val);
    }
    DUPTERM = NULL;
    mp_printf(&mp_plat_print, "dupterm: stream detached after an error:\n");
    mp_obj_print_exception(&mp_plat_print, exc);
    return MP_OBJ_NULL;
}

void dupterm_tx_strn(const char *str, size_t len) {
    dupterm_obj_t *d = DUPTERM;
    // With the heap locked no Python can run: the output stays on COM1.
    if (d == NULL || busy || len == 0 || gc_is_locked()) {
        return;
    }
    call_stream(d, str, len);
}

int dupterm_rx_chr(void) {
    dupterm_obj_t *d = DUPTERM;
    if (d == NULL || busy) {
        return -1;
    }
    if (d->rx_pos >= d->rx_len) {
        mp_obj_t n = call_stream(d, NULL, 0);
        if (n == MP_OBJ_NULL || !mp_obj_is_small_int(n)) {
            return -1;          // None: nothing there
        }
        mp_int_t got = MP_OBJ_SMALL_INT_VALUE(n);
        if (got <= 0 || DUPTERM != d) {
            return -1;
        }
        d->rx_len = got < DUPTERM_RX_SIZE ? got : DUPTERM_RX_SIZE;
        d->rx_pos = 0;
    }
    return d->rx[d->rx_pos++];
}

// x86.dupterm(stream): attach a stream (None: detach); x86.dupterm(): the
// attached stream. Returns the stream attached before, or None.
static mp_obj_t x86_dupterm(size_t n_args, const mp_obj_t *args) {
    dupterm_obj_t *d = DUPTERM;
    mp_obj_t prev = d != NULL ? d->stream : mp_const_none;
    if (n_args == 0) {
        return prev;
    }
    if (args[0] == mp_const_none) {
        DUPTERM = NULL;
        return prev;
    }
    mp_obj_t dest[2];
    mp_load_method(args[0], MP_QSTR_write, dest);      // AttributeError if missing
    mp_load_method(args[0], MP_QSTR_readinto, dest);
    d = mp_obj_malloc(dupterm_obj_t, &dupterm_type);
    d->stream = args[0];
    d->rx_buf = mp_obj_new_bytearray_by_ref(DUPTERM_RX_SIZE, d->rx);
    d->rx_len = d->rx_pos = 0;
    DUPTERM = d;
    return prev;
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(x86_dupterm_obj, 0, 1, x86_dupterm);
