// help(): the port's text, help('modules') and help(obj).
//
// MicroPython's own help('modules') lists only the built-in modules and then
// promises "modules on the filesystem"; here the other modules are the ROM's
// (firmware/manifest.py, rom.c), so this help lists both, by where they live.
// help_init() installs it over the core's (builtins.help) after each mp_init().
#include <string.h>

#include "py/builtin.h"
#include "py/objmodule.h"
#include "py/objstr.h"
#include "py/runtime.h"
#include "rom.h"

#define COLUMNS         4
#define COLUMN_WIDTH    18

static void add_names_from_map(mp_obj_t list, const mp_map_t *map) {
    for (size_t i = 0; i < map->alloc; i++) {
        if (mp_map_slot_is_filled(map, i)) {
            mp_obj_list_append(list, map->table[i].key);
        }
    }
}

// The ROM's top-level modules and packages: "virtio/blk.mpy" -> "virtio".
static void add_rom_names(mp_obj_t list) {
    for (size_t i = 0; i < rom_count(); i++) {
        size_t len;
        const char *name = rom_name(i, &len);
        const char *slash = memchr(name, '/', len);
        size_t n = slash ? (size_t)(slash - name) : len;
        if (!slash && n > 4 && memcmp(name + n - 4, ".mpy", 4) == 0) {
            n -= 4;
        } else if (!slash) {
            continue;       // not a module
        }
        mp_obj_t str = mp_obj_new_str(name, n);
        if (mp_obj_is_true(mp_binary_op(MP_BINARY_OP_CONTAINS, list, str))) {
            continue;       // another file of a package already listed
        }
        mp_obj_list_append(list, str);
    }
}

// Sorted, in columns filled top to bottom.
static void print_columns(mp_obj_t list) {
    mp_obj_list_sort(1, &list, (mp_map_t *)&mp_const_empty_map);
    size_t len;
    mp_obj_t *items;
    mp_obj_list_get(list, &len, &items);
    size_t rows = (len + COLUMNS - 1) / COLUMNS;
    for (size_t row = 0; row < rows; row++) {
        for (size_t i = row; i < len; i += rows) {
            size_t n = mp_print_str(MP_PYTHON_PRINTER, mp_obj_str_get_str(items[i]));
            if (i + rows < len) {
                do {
                    mp_print_str(MP_PYTHON_PRINTER, " ");
                } while (++n % COLUMN_WIDTH);
            }
        }
        mp_print_str(MP_PYTHON_PRINTER, "\n");
    }
}

static void print_modules(void) {
    mp_obj_t builtin = mp_obj_new_list(0, NULL);
    add_names_from_map(builtin, &mp_builtin_module_map);
    add_names_from_map(builtin, &mp_builtin_extensible_module_map);
    mp_print_str(MP_PYTHON_PRINTER, "Built-in modules:\n");
    print_columns(builtin);
    mp_obj_t rom = mp_obj_new_list(0, NULL);
    add_rom_names(rom);
    mp_print_str(MP_PYTHON_PRINTER, "\nModules in the ROM (firmware/manifest.py, read-only):\n");
    print_columns(rom);
}

// "object X is of type T", then its members, as MicroPython's own help(obj).
static void print_object(mp_obj_t obj) {
    const mp_obj_type_t *type = mp_obj_get_type(obj);
    mp_print_str(MP_PYTHON_PRINTER, "object ");
    mp_obj_print(obj, PRINT_STR);
    mp_printf(MP_PYTHON_PRINTER, " is of type %q\n", type->name);
    mp_map_t *map = NULL;
    if (type == &mp_type_module) {
        map = &mp_obj_module_get_globals(obj)->map;
    } else {
        if (type == &mp_type_type) {
            type = MP_OBJ_TO_PTR(obj);
        }
        if (MP_OBJ_TYPE_HAS_SLOT(type, locals_dict)) {
            map = &MP_OBJ_TYPE_GET_SLOT(type, locals_dict)->map;
        }
    }
    for (size_t i = 0; map != NULL && i < map->alloc; i++) {
        if (mp_map_slot_is_filled(map, i)) {
            mp_print_str(MP_PYTHON_PRINTER, "  ");
            mp_obj_print(map->table[i].key, PRINT_STR);
            mp_print_str(MP_PYTHON_PRINTER, " -- ");
            mp_obj_print(map->table[i].value, PRINT_STR);
            mp_print_str(MP_PYTHON_PRINTER, "\n");
        }
    }
}

static mp_obj_t x86_help(size_t n_args, const mp_obj_t *args) {
    if (n_args == 0) {
        mp_print_str(MP_PYTHON_PRINTER, MICROPY_PY_BUILTINS_HELP_TEXT);
    } else if (args[0] == MP_OBJ_NEW_QSTR(MP_QSTR_modules)) {
        print_modules();
    } else {
        print_object(args[0]);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(x86_help_obj, 0, 1, x86_help);

void help_init(void) {
    mp_store_attr(MP_OBJ_FROM_PTR(&mp_module_builtins), MP_QSTR_help, MP_OBJ_FROM_PTR(&x86_help_obj));
}
