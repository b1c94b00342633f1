#!/usr/bin/env python3
"""Counts test cases in Bazel's test.xml files and prints "N passed, N failed".

Usage: count_tests.py RESULTS_DIR. Each suite's files are in a subfolder; a
BUILD_FAILED marker there counts as one failure. Exits 1 on any failure.
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def count(results: pathlib.Path):
    passed = failed = 0
    for marker in results.rglob("BUILD_FAILED"):
        print(f"FAILED: build of suite {marker.parent.name}")
        failed += 1
    for xml in sorted(results.rglob("test.xml")):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            print(f"FAILED: unreadable {xml}")
            failed += 1
            continue
        cases = list(root.iter("testcase"))
        if not cases:
            # A target that produced no cases (e.g. crashed before any ran).
            errors = int(root.get("errors", "0")) + int(root.get("failures", "0"))
            failed += 1 if errors else 0
            passed += 0 if errors else 1
            continue
        for case in cases:
            bad = case.find("failure") is not None or case.find("error") is not None
            if bad:
                print(f"FAILED: {xml.parent.relative_to(results)} {case.get('classname', '')}.{case.get('name')}")
                failed += 1
            elif case.get("result") == "suppressed" or case.find("skipped") is not None:
                continue
            else:
                passed += 1
    return passed, failed


def main():
    passed, failed = count(pathlib.Path(sys.argv[1]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
