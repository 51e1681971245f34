"""`rax-glance-export-verify CONTAINER/OBJECT`: check an exported image end to end.

Checks the manifest (present, pointing at its own segments, with the recorded size and
hashes), every segment (present, right size, unchanged ETags), that no stray object sits
under the segment prefix, then reads the object as any Swift client would and compares its
length, sha256 and md5 with the record.

Exit status: 0 intact; 1 damaged or missing; 2 usage, access or Swift errors.

Ways to reach the account (first that applies):

1. ``--os-storage-url`` and ``--os-auth-token`` (or $OS_STORAGE_URL/$OS_AUTH_TOKEN);
2. ``--project ID`` with ``--config-file`` holding ``[rax_swift]`` service credentials and
   ``storage_url_template`` (what the bundle itself uses);
3. ``--os-auth-url``, ``--os-username``, ``--os-password`` (or $OS_AUTH_URL, ...): a user's
   own account (``--auth-version 1`` for tempauth; 3 for Keystone with ``--os-project-name``).
"""

import argparse
import json
import os
import sys

from oslo_config import cfg

from rax_glance.swift import access
from rax_glance.swift import dlo
from rax_glance.swift import errors
from rax_glance.swift import names

EXIT_INTACT, EXIT_DAMAGED, EXIT_ERROR = 0, 1, 2


def _parser():
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog='rax-glance-export-verify',
        description='Verify an exported image (a Dynamic Large Object written by '
                    'rax-glance) end to end. Exit 0 only when it is intact.')
    p.add_argument('path', metavar='CONTAINER/OBJECT', help='e.g. exports/<image_id>.vhd')
    p.add_argument('--os-storage-url', default=env('OS_STORAGE_URL'),
                   help='Storage URL of the account (with --os-auth-token).')
    p.add_argument('--os-auth-token', default=env('OS_AUTH_TOKEN'),
                   help='Token for --os-storage-url.')
    p.add_argument('--project', help='Project id whose account to check, through the '
                                     '[rax_swift] service credentials of --config-file.')
    p.add_argument('--config-file', action='append', default=[],
                   help='Config file with [rax_swift] (may repeat).')
    p.add_argument('--os-auth-url', default=env('OS_AUTH_URL'), help='Auth URL of a user.')
    p.add_argument('--os-username', default=env('OS_USERNAME'), help='User name.')
    p.add_argument('--os-password', default=env('OS_PASSWORD'), help='Password or key.')
    p.add_argument('--os-project-name', default=env('OS_PROJECT_NAME'),
                   help='Project name (Keystone v3).')
    p.add_argument('--os-user-domain-name', default=env('OS_USER_DOMAIN_NAME', 'Default'))
    p.add_argument('--os-project-domain-name',
                   default=env('OS_PROJECT_DOMAIN_NAME', 'Default'))
    p.add_argument('--auth-version', default=env('OS_AUTH_VERSION', '3'),
                   choices=['1', '2.0', '3'], help='Auth version of --os-auth-url.')
    p.add_argument('--timeout', type=float, default=60.0, help='Seconds per Swift request.')
    p.add_argument('--skip-data', action='store_true',
                   help='Check manifest and segment listing only; do not read the data.')
    p.add_argument('--json', action='store_true', help='Print the report as JSON.')
    return p


def _access(args):
    if args.os_storage_url or args.os_auth_token:
        if not (args.os_storage_url and args.os_auth_token):
            raise errors.AccessError('--os-storage-url and --os-auth-token go together')
        return access.ProjectSwift(args.os_storage_url, token=args.os_auth_token,
                                   timeout=args.timeout, retries=2)
    if args.project:
        conf = cfg.ConfigOpts()
        access.register_opts(conf)
        try:
            conf(['--config-file=%s' % f for f in args.config_file], project='rax-glance',
                 default_config_files=[] if args.config_file else None)
        except cfg.Error as exc:
            raise errors.AccessError('Cannot read the configuration: %s' % exc) from None
        return access.ProjectSwift.for_project(args.project, conf)
    if args.os_auth_url and args.os_username and args.os_password:
        os_options = {}
        if args.auth_version == '3':
            os_options = {'project_name': args.os_project_name,
                          'user_domain_name': args.os_user_domain_name,
                          'project_domain_name': args.os_project_domain_name}
        auth = access.ServiceAuth(args.os_auth_url, args.os_username, args.os_password,
                                  args.auth_version, os_options, args.timeout)
        return access.ProjectSwift(auth.storage_url(), token_source=auth.token,
                                   timeout=args.timeout, retries=2)
    raise errors.AccessError('Say how to reach Swift: --os-storage-url/--os-auth-token, '
                             '--project with --config-file, or --os-auth-url/--os-username/'
                             '--os-password')


def _print_report(report, out):
    rec = report['record']
    out.write('Checking %s/%s\n' % (report['container'], report['object']))
    if rec is None:
        out.write('manifest : MISSING OR NOT VERIFIABLE\n')
    else:
        out.write('manifest : present; records %d bytes in %d segment(s) of %d bytes\n'
                  % (rec['size'], rec['segment-count'], rec['segment-size']))
        out.write('           sha256 %s\n           md5    %s\n' % (rec['sha256'], rec['md5']))
        out.write('segments : %d object(s) under the prefix, %d expected\n'
                  % (report['listing_count'], rec['segment-count']))
        if report['bytes_read'] is None:
            out.write('data     : not read (--skip-data)\n')
        else:
            out.write('data     : %d bytes served, sha256 %s\n'
                      % (report['bytes_read'], report['sha256']))
    for problem in report['problems']:
        out.write('PROBLEM  : %s\n' % problem)
    out.write('RESULT   : %s\n' % ('INTACT' if report['ok'] else 'DAMAGED'))


def main(argv=None, out=None, err=None):
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        container, obj = names.split_path(args.path)
        swift = _access(args)
        report = dlo.verify_dlo(swift, container, obj, read_data=not args.skip_data)
    except errors.SwiftError as exc:
        err.write('rax-glance-export-verify: %s\n' % exc.message)
        return EXIT_ERROR
    except Exception as exc:
        # Swift or network failures (and anything unforeseen): a message, not a traceback.
        err.write('rax-glance-export-verify: %s\n'
                  % errors.describe(exc, 'Checking %s' % args.path))
        return EXIT_ERROR
    if args.json:
        json.dump(report, out, indent=2, sort_keys=True)
        out.write('\n')
    else:
        _print_report(report, out)
    return EXIT_INTACT if report['ok'] else EXIT_DAMAGED


if __name__ == '__main__':
    sys.exit(main())
