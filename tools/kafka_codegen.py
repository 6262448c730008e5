#!/usr/bin/env python3
"""kafka_codegen.py: generates Sluice's Kafka message codec from Kafka's JSON schemas.

Usage:
    python3 tools/kafka_codegen.py SCHEMA_DIR OUT_DIR
e.g. from the repository root:
    python3 tools/kafka_codegen.py ../shared/specs/kafka/message src/kafka

Reads the message schemas named in MESSAGES below (the Apache Kafka
clients/src/main/resources/common/message/*.json files) and writes
OUT_DIR/kafka_msg.h and OUT_DIR/kafka_msg.c:

  * one C struct per message and per nested struct: integers as stdint types,
    strings/bytes/records as struct slice (data == NULL is null), uuid as
    struct kafka_uuid, arrays as pointer + count (+ a _null flag when the
    array is nullable in some version), struct-typed fields by value;
  * a descriptor table per struct (struct kafka_field, kafka/kafka_codec.h)
    giving each field's type, versions, nullable/tagged versions, tag,
    default and offset; the hand-written interpreter in kafka_codec.c reads
    and writes every message from these tables;
  * thin typed wrappers kafka_<msg>_init/_decode/_encode;
  * per-API constants, the api_key -> name table for every API in SCHEMA_DIR
    and the request/response header version rules.

Python 3 standard library only. The output is deterministic, so regenerating
from the same schemas gives byte-identical files (checked in CI by diff).
"""

import json
import os
import re
import sys
import textwrap

# APIs whose request and response are generated, in api-key order of use.
APIS = [
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch",
    "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup",
    "DescribeGroups", "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics",
    "DeleteTopics", "InitProducerId", "DescribeConfigs", "SaslAuthenticate",
    "CreatePartitions",
]
HEADERS = ["RequestHeader", "ResponseHeader"]
DATA = ["ConsumerProtocolSubscription", "ConsumerProtocolAssignment"]

V_MAX = 0x7FFF  # open-ended version range ("3+")

PRIMS = {
    # schema type: (KAFKA_T_*, C type)
    "bool": ("KAFKA_T_BOOL", "bool"),
    "int8": ("KAFKA_T_INT8", "int8_t"),
    "int16": ("KAFKA_T_INT16", "int16_t"),
    "uint16": ("KAFKA_T_UINT16", "uint16_t"),
    "int32": ("KAFKA_T_INT32", "int32_t"),
    "uint32": ("KAFKA_T_UINT32", "uint32_t"),
    "int64": ("KAFKA_T_INT64", "int64_t"),
    "float64": ("KAFKA_T_FLOAT64", "double"),
    "uuid": ("KAFKA_T_UUID", "struct kafka_uuid"),
    "string": ("KAFKA_T_STRING", "struct slice"),
    "bytes": ("KAFKA_T_BYTES", "struct slice"),
    "records": ("KAFKA_T_RECORDS", "struct slice"),
}
INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1), "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1), "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
}
C_KEYWORDS = set("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed sizeof
static struct switch typedef union unsigned void volatile while bool true false""".split())


class SchemaError(Exception):
    pass


def strip_comments(text):
    """Removes // comments that lie outside string literals."""
    out = []
    for line in text.split("\n"):
        in_str = False
        i = 0
        cut = len(line)
        while i < len(line):
            c = line[i]
            if in_str:
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)


def load_schema(schema_dir, name):
    path = os.path.join(schema_dir, name + ".json")
    with open(path, encoding="utf-8") as f:
        return json.loads(strip_comments(f.read()))


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


class Versions:
    """An inclusive version range; empty when lo > hi ("none")."""

    def __init__(self, text):
        text = str(text).strip()
        if text == "none":
            self.lo, self.hi = 0, -1
        elif text.endswith("+"):
            self.lo, self.hi = int(text[:-1]), V_MAX
        elif "-" in text:
            a, b = text.split("-")
            self.lo, self.hi = int(a), int(b)
        else:
            self.lo = self.hi = int(text)
        if self.lo < 0 or self.hi > V_MAX:
            raise SchemaError("bad version range " + text)

    @classmethod
    def empty(cls):
        return cls("none")

    def is_empty(self):
        return self.lo > self.hi

    def contains(self, v):
        return self.lo <= v <= self.hi

    def c_lo(self):
        return "-1" if self.is_empty() else str(self.lo)

    def c_hi(self):
        if self.is_empty():
            return "-1"
        return "KAFKA_V_MAX" if self.hi == V_MAX else str(self.hi)

    def __str__(self):
        if self.is_empty():
            return "none"
        if self.hi == V_MAX:
            return "%d+" % self.lo
        if self.lo == self.hi:
            return str(self.lo)
        return "%d-%d" % (self.lo, self.hi)


class Field:
    pass


class Struct:
    def __init__(self, name, cname):
        self.name = name
        self.cname = cname
        self.fields = []


class Message:
    pass


def parse_default(ftype, raw, nullable_all, where):
    """Returns (def_int, def_float, def_str, has_null_default) for a field."""
    if ftype in INT_RANGES:
        if raw is None:
            return 0, 0.0, None, False
        text = str(raw).strip()
        if re.fullmatch(r"-?0[0-7]+", text):
            val = int(text, 8)
        else:
            val = int(text, 0)
        lo, hi = INT_RANGES[ftype]
        if not lo <= val <= hi:
            raise SchemaError("%s: default %s out of range" % (where, text))
        return val, 0.0, None, False
    if ftype == "bool":
        if raw is None:
            return 0, 0.0, None, False
        text = str(raw).strip().lower()
        if text not in ("true", "false"):
            raise SchemaError("%s: bad bool default %s" % (where, raw))
        return (1 if text == "true" else 0), 0.0, None, False
    if ftype == "float64":
        return 0, float(raw) if raw is not None else 0.0, None, False
    if ftype in ("string", "bytes"):
        if raw is None:
            return 0, 0.0, "", False
        if raw == "null":
            if not nullable_all:
                raise SchemaError("%s: null default on a field not nullable in all versions" % where)
            return 0, 0.0, None, True
        if ftype == "bytes":
            raise SchemaError("%s: bytes fields take no custom default" % where)
        return 0, 0.0, str(raw), False
    if ftype == "records":
        return 0, 0.0, None, True
    if ftype == "uuid":
        if raw not in (None, "", "AAAAAAAAAAAAAAAAAAAAAA"):
            raise SchemaError("%s: uuid defaults other than zero are not supported" % where)
        return 0, 0.0, None, False
    raise SchemaError("%s: no default for type %s" % (where, ftype))


class Builder:
    """Turns one message schema into Structs, children listed before parents."""

    def __init__(self, msg_json, msg_cname, taken_cnames):
        self.json = msg_json
        self.msg_cname = msg_cname
        self.structs = []          # post-order
        self.by_name = {}          # schema struct name -> Struct
        self.common = {c["name"]: c for c in msg_json.get("commonStructs", [])}
        self.taken = taken_cnames
        self.valid = Versions(msg_json["validVersions"])
        self.flex = Versions(msg_json.get("flexibleVersions", "none"))

    def struct_cname(self, name):
        """kafka_<message>_<struct>, without repeating the message or API name:
        MetadataResponseTopic -> kafka_metadata_response_topic,
        ListOffsetsTopic in ListOffsetsRequest -> kafka_list_offsets_request_topic."""
        s = snake(name)
        msg = self.msg_cname[len("kafka_"):]
        api = re.sub(r"_(request|response)$", "", msg)
        if s.startswith(msg + "_"):
            return "kafka_" + s
        if s.startswith(api + "_") and api != msg:
            return self.msg_cname + "_" + s[len(api) + 1:]
        return self.msg_cname + "_" + s

    def claim(self, cname, what):
        if cname in self.taken:
            raise SchemaError("C name %s of %s already used" % (cname, what))
        self.taken.add(cname)

    def build_struct(self, name, cname, fields_json, where):
        st = Struct(name, cname)
        members = set()
        last_tag = -1
        for fj in fields_json:
            f = self.build_field(fj, where)
            for m in f.members:
                if m in members:
                    raise SchemaError("%s: duplicate C member %s" % (where, m))
                members.add(m)
            if f.tag is not None:
                if f.tag <= last_tag:
                    raise SchemaError("%s: tags must ascend in schema order" % where)
                last_tag = f.tag
            st.fields.append(f)
        self.structs.append(st)
        return st

    def struct_ref(self, name, fj, where):
        if "fields" in fj:
            if name in self.by_name:
                raise SchemaError("%s: struct %s defined twice" % (where, name))
            cname = self.struct_cname(name)
            self.claim(cname, where)
            self.by_name[name] = None  # guards against recursion
            st = self.build_struct(name, cname, fj["fields"], where + "." + name)
            self.by_name[name] = st
            return st
        if name in self.by_name and self.by_name[name] is not None:
            return self.by_name[name]
        if name in self.common:
            cname = self.struct_cname(name)
            self.claim(cname, where)
            self.by_name[name] = None
            st = self.build_struct(name, cname, self.common[name]["fields"], where + "." + name)
            self.by_name[name] = st
            return st
        raise SchemaError("%s: unknown type %s" % (where, name))

    def build_field(self, fj, where):
        f = Field()
        f.name = fj["name"]
        where = where + "." + f.name
        f.cname = snake(f.name)
        if f.cname in C_KEYWORDS:
            f.cname += "_"
        t = fj["type"]
        f.is_array = t.startswith("[]")
        base = t[2:] if f.is_array else t
        f.versions = Versions(fj["versions"])
        f.nullable = Versions(fj.get("nullableVersions", "none"))
        f.ignorable = bool(fj.get("ignorable", False))
        f.about = fj.get("about", "")
        fv = fj.get("flexibleVersions")
        if fv is None:
            f.compact_never = False
        elif fv == "none":
            f.compact_never = True
        else:
            raise SchemaError("%s: field flexibleVersions other than none unsupported" % where)
        if "tag" in fj:
            f.tag = int(fj["tag"])
            f.tagged = Versions(fj["taggedVersions"])
            if f.tagged.hi != V_MAX:
                raise SchemaError("%s: taggedVersions must be open-ended" % where)
            if not (f.versions.lo <= f.tagged.lo and f.versions.hi == V_MAX):
                raise SchemaError("%s: taggedVersions outside versions" % where)
            if f.tagged.lo < self.flex.lo or self.flex.is_empty():
                raise SchemaError("%s: tagged field in a non-flexible version" % where)
        else:
            if "taggedVersions" in fj:
                raise SchemaError("%s: taggedVersions without tag" % where)
            f.tag = None
            f.tagged = Versions.empty()
        if not f.nullable.is_empty():
            nullable_types = ("string", "bytes", "records")
            if not f.is_array and base not in nullable_types:
                raise SchemaError("%s: type %s cannot be nullable" % (where, t))
        nullable_all = (not f.nullable.is_empty() and f.nullable.lo <= f.versions.lo
                        and f.nullable.hi >= f.versions.hi)
        f.sub = None
        if base in PRIMS:
            f.base = base
            f.ktype = PRIMS[base][0]
            f.ctype = PRIMS[base][1]
        else:
            f.base = "struct"
            f.sub = self.struct_ref(base, fj, where)
            f.ktype = "KAFKA_T_STRUCT"
            f.ctype = "struct " + f.sub.cname
        if f.is_array:
            if "default" in fj:
                raise SchemaError("%s: arrays take no default" % where)
            f.def_int, f.def_float, f.def_str, f.def_null = 0, 0.0, None, False
        elif f.base == "struct":
            if "default" in fj:
                raise SchemaError("%s: structs take no default" % where)
            f.def_int, f.def_float, f.def_str, f.def_null = 0, 0.0, None, False
        else:
            f.def_int, f.def_float, f.def_str, f.def_null = parse_default(
                base, fj.get("default"), nullable_all, where)
        f.members = [f.cname]
        if f.is_array:
            f.members += [f.cname + "_count"]
            if not f.nullable.is_empty():
                f.members += [f.cname + "_null"]
        return f


def c_string(s):
    out = '"'
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out += "\\" + ch
        elif 32 <= o < 127:
            out += ch
        else:
            for b in ch.encode("utf-8"):
                out += "\\%03o" % b
    return out + '"'


def comment_lines(text, indent, width=92):
    text = " ".join(text.split()).replace("*/", "* /")
    if not text:
        return []
    lines = textwrap.wrap(text, width - len(indent) - 3)
    if len(lines) == 1:
        return [indent + "/* " + lines[0] + " */"]
    out = [indent + "/*"]
    out += [indent + " * " + ln for ln in lines]
    out.append(indent + " */")
    return out


def field_version_note(f):
    parts = ["v" + str(f.versions)]
    if f.tag is not None:
        parts.append("tag %d in v%s" % (f.tag, f.tagged))
    if not f.nullable.is_empty():
        parts.append("nullable v%s" % f.nullable)
    if f.ignorable:
        parts.append("ignorable")
    if f.def_null:
        parts.append("default null")
    elif f.def_str:
        parts.append("default \"%s\"" % f.def_str)
    elif f.def_int and f.base in INT_RANGES:
        parts.append("default %d" % f.def_int)
    elif f.def_int and f.base == "bool":
        parts.append("default true")
    return ", ".join(parts)


def emit_struct_decl(st, out):
    out.append("struct %s {" % st.cname)
    if not st.fields:
        out.append("\tuint8_t unused_; /* the schema has no fields */")
    for f in st.fields:
        note = field_version_note(f)
        about = " ".join(f.about.split())
        out += comment_lines("%s (%s)%s" % (f.name, note, ": " + about if about else ""), "\t")
        if f.is_array:
            out.append("\t%s *%s;" % (f.ctype, f.cname))
            out.append("\tsize_t %s_count;" % f.cname)
            if not f.nullable.is_empty():
                out.append("\tbool %s_null; /* the array is null */" % f.cname)
        else:
            out.append("\t%s %s;" % (f.ctype, f.cname))
    out.append("};")
    out.append("")


def emit_struct_desc(st, out):
    if st.fields:
        out.append("static const struct kafka_field %s_fields[] = {" % st.cname)
        for f in st.fields:
            items = [
                ".name = %s" % c_string(f.name),
                ".type = %s" % f.ktype,
                ".min_version = %s" % f.versions.c_lo(),
                ".max_version = %s" % f.versions.c_hi(),
                ".nullable_min = %s" % f.nullable.c_lo(),
                ".nullable_max = %s" % f.nullable.c_hi(),
                ".tagged_min = %s" % f.tagged.c_lo(),
            ]
            if f.tag is not None:
                items.append(".tag = %d" % f.tag)
            for flag in ("is_array", "ignorable", "compact_never"):
                if getattr(f, flag):
                    items.append(".%s = 1" % flag)
            if f.def_null:
                items.append(".default_null = 1")
            items.append(".offset = offsetof(struct %s, %s)" % (st.cname, f.cname))
            if f.is_array:
                items.append(".count_offset = offsetof(struct %s, %s_count)" % (st.cname, f.cname))
                if not f.nullable.is_empty():
                    items.append(".null_offset = offsetof(struct %s, %s_null)" % (st.cname, f.cname))
            if f.sub is not None:
                items.append(".sub = &%s_struct" % f.sub.cname)
            if f.base in INT_RANGES or f.base == "bool":
                if f.def_int == -(1 << 63):
                    items.append(".def_int = INT64_MIN")
                elif f.def_int:
                    items.append(".def_int = %dLL" % f.def_int)
            if f.base == "float64" and f.def_float:
                items.append(".def_float = %r" % f.def_float)
            if f.base in ("string", "bytes") and not f.is_array and f.def_str:
                items.append(".def_str = %s" % c_string(f.def_str))
            out.append("\t{")
            line = "\t\t"
            for it in items:
                piece = it + ","
                if len(line) + len(piece) + 1 > 92 and line.strip():
                    out.append(line.rstrip())
                    line = "\t\t"
                line += piece + " "
            out.append(line.rstrip())
            out.append("\t},")
        out.append("};")
    out.append("static const struct kafka_struct_desc %s_struct = {" % st.cname)
    out.append("\t.name = %s," % c_string(st.name))
    out.append("\t.size = sizeof(struct %s)," % st.cname)
    if st.fields:
        out.append("\t.fields = %s_fields," % st.cname)
        out.append("\t.n_fields = %d," % len(st.fields))
    else:
        out.append("\t.fields = NULL,")
        out.append("\t.n_fields = 0,")
    out.append("};")
    out.append("")


def build_messages(schema_dir):
    names = []
    for api in APIS:
        names += [api + "Request", api + "Response"]
    names += HEADERS + DATA
    taken = set()
    msgs = []
    for name in names:
        js = load_schema(schema_dir, name)
        if js["name"] != name:
            raise SchemaError("%s.json names %s" % (name, js["name"]))
        m = Message()
        m.name = name
        m.cname = "kafka_" + snake(name)
        m.kind = js["type"]
        m.api_key = int(js.get("apiKey", -1))
        b = Builder(js, m.cname, taken)
        b.claim(m.cname, name)
        m.valid = b.valid
        m.flex = b.flex
        m.body = b.build_struct(name, m.cname, js["fields"], name)
        m.structs = b.structs
        msgs.append(m)
    return msgs


def all_apis(schema_dir):
    """Every request schema in the directory: key -> (name, valid, flex)."""
    apis = {}
    for fn in sorted(os.listdir(schema_dir)):
        if not fn.endswith("Request.json"):
            continue
        js = load_schema(schema_dir, fn[:-5])
        if js.get("type") != "request" or "apiKey" not in js:
            continue
        key = int(js["apiKey"])
        if key in apis:
            raise SchemaError("api key %d used twice" % key)
        apis[key] = (js["name"][:-len("Request")], Versions(js["validVersions"]),
                     Versions(js.get("flexibleVersions", "none")))
    return apis


HEADER_TOP = """\
/*
 * kafka_msg.h: Kafka message structs and codec entry points.
 *
 * GENERATED by tools/kafka_codegen.py from the Kafka 3.8 JSON message schemas
 * (shared/specs/kafka/message). DO NOT EDIT: change the generator and run, from
 * the repository root,
 *     python3 tools/kafka_codegen.py ../shared/specs/kafka/message src/kafka
 * docs/kafka-codec.md explains the generator and the runtime (kafka_codec.c).
 *
 * Every message has a struct kafka_<msg> and
 *     void kafka_<msg>_init(struct kafka_<msg> *m);        schema defaults
 *     int kafka_<msg>_decode(struct reader *r, int16_t version,
 *                            struct kafka_arena *arena, struct kafka_<msg> *out);
 *     int kafka_<msg>_encode(struct writer *w, int16_t version,
 *                            const struct kafka_<msg> *in);
 * Strings, bytes and records are struct slice (data == NULL: null); arrays are
 * a pointer plus <name>_count, and <name>_null when the array is nullable.
 * Decoded slices BORROW from the reader's buffer and decoded arrays live in
 * the arena: both must outlive the struct. Fields absent from the decoded
 * version hold their schema defaults. Nested structs have kafka_<struct>_init()
 * too. Return codes are those of kafka_codec_decode/_encode (kafka_codec.h).
 */
#ifndef SLUICE_KAFKA_MSG_H
#define SLUICE_KAFKA_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reader.h"
#include "core/writer.h"
#include "kafka/kafka_arena.h"
#include "kafka/kafka_codec.h"
"""

SOURCE_TOP = """\
/*
 * kafka_msg.c: descriptor tables and typed wrappers for the Kafka messages.
 *
 * GENERATED by tools/kafka_codegen.py from the Kafka 3.8 JSON message schemas
 * (shared/specs/kafka/message). DO NOT EDIT: change the generator and run, from
 * the repository root,
 *     python3 tools/kafka_codegen.py ../shared/specs/kafka/message src/kafka
 * Each table lists a struct's fields in wire order; kafka_codec.c interprets
 * them (see docs/kafka-codec.md).
 */
#include "kafka/kafka_msg.h"

#include <stddef.h>
#include <stdint.h>
"""


def generate(schema_dir):
    msgs = build_messages(schema_dir)
    apis = all_apis(schema_dir)
    by_name = {m.name: m for m in msgs}
    h = [HEADER_TOP]
    c = [SOURCE_TOP]

    # API keys for every API in the schema directory.
    h.append("/* API keys (every request schema in the spec directory). */")
    for key in sorted(apis):
        h.append("#define KAFKA_API_%s %d" % (snake(apis[key][0]).upper(), key))
    h.append("#define KAFKA_API_KEY_MAX %d" % max(apis))
    h.append("")
    h.append("/* Versions this codec decodes and encodes, per generated API (validVersions),")
    h.append(" * and the first flexible version (-1: never flexible). */")
    for api in APIS:
        req, resp = by_name[api + "Request"], by_name[api + "Response"]
        if (req.valid.lo, req.valid.hi) != (resp.valid.lo, resp.valid.hi):
            raise SchemaError(api + ": request and response versions differ")
        if (req.flex.lo, req.flex.hi) != (resp.flex.lo, resp.flex.hi):
            raise SchemaError(api + ": request and response flexible versions differ")
        up = snake(api).upper()
        h.append("#define KAFKA_%s_MIN_VERSION %d" % (up, req.valid.lo))
        h.append("#define KAFKA_%s_MAX_VERSION %d" % (up, req.valid.hi))
        h.append("#define KAFKA_%s_FLEXIBLE_MIN_VERSION %s" % (up, req.flex.c_lo()))
    h.append("")

    for m in msgs:
        h.append("/* %s (%s, versions %s, flexible %s%s). */" % (
            m.name, m.kind, m.valid, m.flex,
            ", api key %d" % m.api_key if m.api_key >= 0 else ""))
        for st in m.structs:
            emit_struct_decl(st, h)
    h.append("/* Message descriptors (kafka/kafka_codec.h), for generic code and tests. */")
    for m in msgs:
        h.append("extern const struct kafka_msg_desc %s_desc;" % m.cname)
    h.append("")
    for m in msgs:
        h.append("/* %s v%s. */" % (m.name, m.valid))
        for st in m.structs:
            proto = "void %s_init(struct %s *m);" % (st.cname, st.cname)
            if len(proto) > 92:
                proto = "void %s_init(\n\tstruct %s *m);" % (st.cname, st.cname)
            h.append(proto)
        h.append("int %s_decode(struct reader *r, int16_t version," % m.cname)
        h.append("\tstruct kafka_arena *arena, struct %s *out);" % m.cname)
        h.append("int %s_encode(struct writer *w, int16_t version," % m.cname)
        h.append("\tconst struct %s *in);" % m.cname)
        h.append("")

    h.append("""\
/* One entry per API key known to the schemas; request/response are NULL when
 * this codec does not generate the API. */
struct kafka_api {
	int16_t key;
	const char *name;          /* "Produce", "ApiVersions", ... */
	int16_t min_version;       /* validVersions of the schema */
	int16_t max_version;
	int16_t flexible_min;      /* first flexible version, -1 if never */
	const struct kafka_msg_desc *request;
	const struct kafka_msg_desc *response;
};

/* Returns the API with this key, or NULL if no schema defines it. */
const struct kafka_api *kafka_api_find(int16_t api_key);
/* Returns the API's name ("Metadata"), or "Unknown". */
const char *kafka_api_name(int16_t api_key);
/* Whether (api_key, version) uses flexible encoding (false for unknown keys). */
bool kafka_api_is_flexible(int16_t api_key, int16_t version);
/* Request header version a request of (api_key, version) carries: 2 when the
 * API version is flexible, else 1 (0 for ControlledShutdown v0). */
int16_t kafka_request_header_version(int16_t api_key, int16_t version);
/* Response header version: 1 when flexible, else 0; ApiVersions responses
 * always use 0 (clients parse them before knowing the broker's versions). */
int16_t kafka_response_header_version(int16_t api_key, int16_t version);

#endif""")

    for m in msgs:
        c.append("/* ---- %s ---- */" % m.name)
        c.append("")
        for st in m.structs:
            emit_struct_desc(st, c)
        c.append("const struct kafka_msg_desc %s_desc = {" % m.cname)
        c.append("\t.name = %s," % c_string(m.name))
        c.append("\t.body = &%s_struct," % m.cname)
        c.append("\t.api_key = %d," % m.api_key)
        c.append("\t.min_version = %d," % m.valid.lo)
        c.append("\t.max_version = %d," % m.valid.hi)
        c.append("\t.flexible_min = %s," % m.flex.c_lo())
        c.append("};")
        c.append("")
        for st in m.structs:
            proto = "void %s_init(struct %s *m)" % (st.cname, st.cname)
            if len(proto) > 92:
                proto = "void %s_init(\n\tstruct %s *m)" % (st.cname, st.cname)
            c.append(proto)
            c.append("{")
            c.append("\tkafka_codec_init(&%s_struct, m);" % st.cname)
            c.append("}")
            c.append("")
        c.append("int %s_decode(struct reader *r, int16_t version," % m.cname)
        c.append("\tstruct kafka_arena *arena, struct %s *out)" % m.cname)
        c.append("{")
        c.append("\treturn kafka_codec_decode(&%s_desc, r, version, arena, out);" % m.cname)
        c.append("}")
        c.append("")
        c.append("int %s_encode(struct writer *w, int16_t version," % m.cname)
        c.append("\tconst struct %s *in)" % m.cname)
        c.append("{")
        c.append("\treturn kafka_codec_encode(&%s_desc, w, version, in);" % m.cname)
        c.append("}")
        c.append("")

    c.append("static const struct kafka_api kafka_apis[KAFKA_API_KEY_MAX + 1] = {")
    for key in sorted(apis):
        name, valid, flex = apis[key]
        gen = name in APIS
        c.append("\t[%d] = { %d, %s, %d, %d, %s, %s, %s }," % (
            key, key, c_string(name), valid.lo, valid.hi, flex.c_lo(),
            "&kafka_%s_request_desc" % snake(name) if gen else "NULL",
            "&kafka_%s_response_desc" % snake(name) if gen else "NULL"))
    c.append("};")
    c.append("""
const struct kafka_api *kafka_api_find(int16_t api_key)
{
	if (api_key < 0 || api_key > KAFKA_API_KEY_MAX || kafka_apis[api_key].name == NULL)
		return NULL;
	return &kafka_apis[api_key];
}

const char *kafka_api_name(int16_t api_key)
{
	const struct kafka_api *api = kafka_api_find(api_key);
	return api ? api->name : "Unknown";
}

bool kafka_api_is_flexible(int16_t api_key, int16_t version)
{
	const struct kafka_api *api = kafka_api_find(api_key);
	return api && api->flexible_min >= 0 && version >= api->flexible_min;
}

int16_t kafka_request_header_version(int16_t api_key, int16_t version)
{
	/* RequestHeader.json: v0 (no ClientId) is used only by ControlledShutdown v0. */
	if (api_key == KAFKA_API_CONTROLLED_SHUTDOWN && version == 0)
		return 0;
	return kafka_api_is_flexible(api_key, version) ? 2 : 1;
}

int16_t kafka_response_header_version(int16_t api_key, int16_t version)
{
	/* ApiVersionsResponse.json: the header never gains tagged fields. */
	if (api_key == KAFKA_API_API_VERSIONS)
		return 0;
	return kafka_api_is_flexible(api_key, version) ? 1 : 0;
}""")
    return "\n".join(h) + "\n", "\n".join(c) + "\n"


# ---- cross-check against Kafka's generated protocol guide ----
#
# protocol_messages.html (from the same JSON, rendered by Kafka's own Java
# generator) shows each version of each message as a BNF block:
#     Fetch Response (Version: 12) => throttle_time_ms ... [responses] TAG_BUFFER
#       throttle_time_ms => INT32
#       responses => topic [partitions] TAG_BUFFER
#         topic => COMPACT_STRING
# --check-doc renders our model the same way and compares: field order,
# version gating, compact/nullable encodings and where tag sections are.

def doc_blocks(path):
    import html as htmlmod
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks = {}
    for pre in re.findall(r"<pre>(.*?)</pre>", text, re.S):
        pre = htmlmod.unescape(pre)
        lines = [ln.rstrip() for ln in pre.split("\n") if ln.strip()]
        head, _, rhs = lines[0].partition("=>")
        m = re.fullmatch(r"(\w+) (Request|Response) \(Version: (\d+)\)", head.strip())
        if m:
            key = (m.group(1) + m.group(2), int(m.group(3)))
        else:
            m = re.fullmatch(r"(Request|Response) Header v(\d+)", head.strip())
            if not m:
                continue
            key = (m.group(1) + "Header", int(m.group(2)))
        if key in blocks:
            continue
        blocks[key] = doc_parse(rhs, lines[1:], 2)[0]
    return blocks


def doc_parse(rhs, lines, indent):
    """Parses 'a [b] TAG_BUFFER' plus its definitions indented by indent."""
    items = rhs.split()
    defs = {}
    i = 0
    while i < len(lines):
        ln = lines[i]
        ind = len(ln) - len(ln.lstrip(" "))
        if ind < indent:
            break
        name, _, sub = ln.strip().partition(" => ")
        toks = sub.split()
        j = i + 1
        while j < len(lines) and len(lines[j]) - len(lines[j].lstrip(" ")) > ind:
            j += 1
        if len(toks) == 1 and toks[0].isupper() and toks[0] != "TAG_BUFFER":
            defs[name] = toks[0]
        else:
            defs[name] = doc_parse(sub, lines[i + 1:j], ind + 2)[0]
        i = j
    out = []
    for it in items:
        if it == "TAG_BUFFER":
            out.append("TAG_BUFFER")
            continue
        arr = it.startswith("[")
        name = it.strip("[]")
        out.append((name, arr, defs.get(name)))
    return out, i


def model_render(st, v, flex):
    out = []
    for f in st.fields:
        tagged = f.tag is not None and f.tagged.contains(v)
        if tagged or not f.versions.contains(v):
            continue
        compact = flex and not f.compact_never
        nullable = f.nullable.contains(v) and not f.is_array
        if f.base == "struct":
            t = model_render(f.sub, v, flex)
        elif f.base in ("string", "bytes"):
            t = ("COMPACT_" if compact else "") + ("NULLABLE_" if nullable else "") + f.base.upper()
        elif f.base == "records":
            t = "COMPACT_RECORDS" if compact else "RECORDS"
        elif f.base == "bool":
            t = "BOOLEAN"
        else:
            t = f.base.upper()
        out.append((snake(f.name), f.is_array, t))
    if flex:
        out.append("TAG_BUFFER")
    return out


def check_doc(schema_dir, doc_path):
    blocks = doc_blocks(doc_path)
    msgs = build_messages(schema_dir)
    checked = 0
    problems = []
    for m in msgs:
        if m.kind == "data":
            continue
        for v in range(m.valid.lo, m.valid.hi + 1):
            doc = blocks.get((m.name, v))
            if doc is None:
                problems.append("%s v%d: not in the guide" % (m.name, v))
                continue
            mine = model_render(m.body, v, m.flex.contains(v))
            if mine != doc:
                problems.append("%s v%d:\n  guide %s\n  ours  %s" % (m.name, v, doc, mine))
            checked += 1
    for p in problems:
        sys.stderr.write(p + "\n")
    sys.stdout.write("checked %d message versions against the guide, %d differ\n"
                     % (checked, len(problems)))
    return 1 if problems else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "--check-doc":
        return check_doc(argv[2], argv[3])
    if len(argv) != 3:
        sys.stderr.write("usage: %s SCHEMA_DIR OUT_DIR\n"
                         "       %s --check-doc SCHEMA_DIR protocol_messages.html\n"
                         % (argv[0], argv[0]))
        return 2
    try:
        header, source = generate(argv[1])
    except (SchemaError, KeyError, ValueError, OSError) as e:
        sys.stderr.write("kafka_codegen: %s\n" % e)
        return 1
    os.makedirs(argv[2], exist_ok=True)
    for name, text in (("kafka_msg.h", header), ("kafka_msg.c", source)):
        path = os.path.join(argv[2], name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
