#!/usr/bin/python3
"""pytds client for sqltunnel/tdstest tests.

Connects to the SQL Server double, runs a few statements and prints one
JSON object: {"ok": true, "results": {...}} or {"ok": false, "error": "..."}.
The password comes from the TDSTEST_PASSWORD environment variable, never
from the command line. Exit status 0 in both cases; 2 for usage errors.

Needs the Debian packages python3-tds and python3-openssl.
"""
import argparse
import json
import os
import sys

import pytds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--cafile", help="trust this root and ask for encryption (pytds then sends ON)")
    p.add_argument("--login-only", action="store_true", help="enc_login_only: pytds sends OFF")
    p.add_argument("--autocommit", action="store_true")
    args = p.parse_args()

    kwargs = dict(
        server=args.host,
        port=args.port,
        user=args.user,
        password=os.environ["TDSTEST_PASSWORD"],
        database="master",
        appname="tdstest-pytds",
        login_timeout=20,
        timeout=60,
        autocommit=args.autocommit,
        disable_connect_retry=True,
    )
    if args.cafile:
        kwargs["cafile"] = args.cafile
        kwargs["validate_host"] = True
        kwargs["enc_login_only"] = args.login_only

    results = {}
    try:
        with pytds.connect(**kwargs) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                results["select1"] = cur.fetchone()[0]
                cur.execute("SELECT @@VERSION")
                results["version"] = cur.fetchone()[0]
                cur.execute("SELECT * FROM tdstest.rows(3, 10)")
                results["rows"] = [r[0].hex() for r in cur.fetchall()]
                cur.execute("SELECT * FROM tdstest.nrows(2, 10000)")
                results["nrows"] = [r[0][:5] + ":" + str(len(r[0])) for r in cur.fetchall()]
            conn.commit()
    except Exception as e:  # report, do not crash: the test reads stdout
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(e).__name__, e)}))
        return 0
    print(json.dumps({"ok": True, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
