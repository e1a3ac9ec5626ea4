#!/usr/bin/env python3
"""Lists the functions of an executable that callgrind saw run, busiest first.

Usage: text_order.py EXECUTABLE CALLGRIND_FILE...

Prints one (mangled) symbol name per line: every function of EXECUTABLE's own code that ran in
any of the callgrind output files (run with --demangle=no), ordered by the instructions executed
in the function itself (not in what it calls), summed over the files. Functions only seen being
called count too (with no cost of their own). Names that are not in EXECUTABLE's symbol table
are left out, so the list suits lld's --symbol-ordering-file. Used by scripts/text-order.sh.
"""
import collections
import os
import re
import subprocess
import sys

NAME = re.compile(r"^(c?(?:ob|fn))=\((\d+)\)(?: (.*))?$")
# A cost line: a position (absolute, or +N / -N / * relative to the previous one), then costs.
COST = re.compile(r"^(?:[+-]?\d+|\*)\s+(\d+)")


def executed(path, exe, cost):
    """Adds the self cost of every function of `exe` in callgrind file `path` to `cost`.

    Functions of `exe` that are only seen being called are added with no cost of their own.
    """
    names = {"ob": {}, "fn": {}}
    in_exe = False      # the current fn= block belongs to exe
    callee_ob = None    # a cob= line for the next call: whether its object is exe
    fn = None
    call_cost_next = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = NAME.match(line)
            if m:
                kind, num, text = m.groups()
                table = names[kind.lstrip("c")]
                if text is not None:
                    table[num] = text
                value = table.get(num, "")
                if kind == "ob":
                    in_exe = os.path.basename(value) == exe
                elif kind == "cob":
                    callee_ob = os.path.basename(value) == exe
                elif kind == "fn":
                    fn = value
                    if in_exe:
                        cost[fn] += 0
                else:  # cfn: without a cob= line the callee is in the caller's object
                    if callee_ob if callee_ob is not None else in_exe:
                        cost[value] += 0
                    callee_ob = None
                continue
            if line.startswith("calls="):
                call_cost_next = True  # the next cost line is the call's inclusive cost
                continue
            c = COST.match(line)
            if not c:
                continue
            if call_cost_next:
                call_cost_next = False
            elif in_exe and fn:
                cost[fn] += int(c.group(1))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exe_path = sys.argv[1]
    exe = os.path.basename(exe_path)
    symbols = set()
    nm = subprocess.run(["nm", "--defined-only", exe_path], capture_output=True, text=True,
                        check=True).stdout
    for line in nm.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[1] in "tTwW":
            symbols.add(fields[2])
    cost = collections.Counter()
    for path in sys.argv[2:]:
        if os.path.getsize(path) > 0:
            executed(path, exe, cost)
    # callgrind marks recursion levels as name'2, name'3: the same function.
    merged = collections.Counter()
    for name, c in cost.items():
        merged[re.sub(r"'\d+$", "", name)] += c
    listed = [n for n, _ in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])) if n in symbols]
    if not listed:
        sys.exit(f"text_order.py: no function of {exe} in the callgrind files")
    sys.stdout.write("".join(n + "\n" for n in listed))


if __name__ == "__main__":
    main()
