"""Struct layouts read from an interpreter's debug information (DWARF), for
the few structs CPython does not install a header for (3.8-3.10's dict keys,
in their Objects/dict-common.h). pyenv builds libpython with -g, so the
compiler's own record of the layout is there; see README.md.
"""
try:
    from elftools.elf.elffile import ELFFile
except ImportError:  # e.g. a pyenv python3 first on PATH
    raise SystemExit("tools/python_layouts needs pyelftools (Debian's "
                     "python3-pyelftools): run it with /usr/bin/python3")


def _name(die):
    attribute = die.attributes.get("DW_AT_name")
    return attribute.value.decode() if attribute else None


def _layout(struct):
    """(size, {member: offset}) of a DW_TAG_structure_type DIE."""
    offsets = {}
    for member in struct.iter_children():
        if member.tag == "DW_TAG_member":
            location = member.attributes.get("DW_AT_data_member_location")
            offsets[_name(member)] = location.value if location else 0
    return struct.attributes["DW_AT_byte_size"].value, offsets


def struct_layouts(library, source_suffix, names):
    """The layouts of `names` (struct tags or typedef names) as the
    compilation unit whose source ends in `source_suffix` saw them:
    {name: (size, {member: offset})}. Raises LookupError for what is not
    there (no DWARF, no such unit or type)."""
    found = {}
    with open(library, "rb") as f:
        elf = ELFFile(f)
        if not elf.has_dwarf_info():
            raise LookupError("%s has no debug information" % library)
        for unit in elf.get_dwarf_info().iter_CUs():
            if not (_name(unit.get_top_DIE()) or "").endswith(source_suffix):
                continue
            for die in unit.iter_DIEs():
                name = _name(die)
                if name not in names or name in found:
                    continue
                if die.tag == "DW_TAG_typedef":
                    die = die.get_DIE_from_attribute("DW_AT_type")
                if die.tag == "DW_TAG_structure_type" and \
                        "DW_AT_declaration" not in die.attributes:
                    found[name] = _layout(die)
            break
    missing = [n for n in names if n not in found]
    if missing:
        raise LookupError("%s: no %s in the debug information of %s" % (
            library, ", ".join(missing), source_suffix))
    return found
