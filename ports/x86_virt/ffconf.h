// Our configuration of ChaN's FatFs R0.15 (the sdist's own ffconf.h is not
// unpacked; every option FatFs reads is set here). See vfs_fat.c.
#define FFCONF_DEF          80286   // the FatFs revision this file is for

// Functions: everything that reads and writes, plus f_mkfs; no string
// functions, no f_forward/f_expand/f_chmod/labels, no fast seek.
#define FF_FS_READONLY      0
#define FF_FS_MINIMIZE      0
#define FF_USE_FIND         0
#define FF_USE_MKFS         1
#define FF_USE_FASTSEEK     0
#define FF_USE_EXPAND       0
#define FF_USE_CHMOD        0
#define FF_USE_LABEL        0
#define FF_USE_FORWARD      0
#define FF_USE_STRFUNC      0
#define FF_PRINT_LLI        0
#define FF_PRINT_FLOAT      0
#define FF_STRF_ENCODE      3

// Names: long file names (a static buffer: one caller at a time), UTF-8 in
// the API, code page 437 for the short names.
#define FF_CODE_PAGE        437
#define FF_USE_LFN          1
#define FF_MAX_LFN          255
#define FF_LFN_UNICODE      2
#define FF_LFN_BUF          255
#define FF_SFN_BUF          12
#define FF_FS_RPATH         0       // the current directory is vfs.c's business

// Volumes: one per mounted VfsFat ("0:" to "7:"), each a whole block device
// (a partition is a block device of its own, made in Python).
#define FF_VOLUMES          8
#define FF_STR_VOLUME_ID    0
#define FF_VOLUME_STRS      "0","1","2","3","4","5","6","7"
#define FF_MULTI_PARTITION  0
#define FF_MIN_SS           512
#define FF_MAX_SS           512
#define FF_LBA64            0
#define FF_MIN_GPT          0x10000000
#define FF_USE_TRIM         0

// System: a sector buffer per file (fewer disk reads), no exFAT, the clock
// from get_fattime() (vfs_fat.c), FSINFO trusted, files locked against
// double opening for writing and the removal of an open file.
#define FF_FS_TINY          0
#define FF_FS_EXFAT         0
#define FF_FS_NORTC         0
#define FF_NORTC_MON        1
#define FF_NORTC_MDAY       1
#define FF_NORTC_YEAR       2024
#define FF_FS_NOFSINFO      0
#define FF_FS_LOCK          16
#define FF_FS_REENTRANT     0
#define FF_FS_TIMEOUT       1000
