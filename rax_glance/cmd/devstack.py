"""rax-glance-devstack: a real Swift and glance-api with the bundle, on 127.0.0.1.

    rax-glance-devstack up [--auth trusted-headers|keystone] [--db sqlite|postgresql]
                           [--conductors N] [--state-dir DIR]
    rax-glance-devstack status [--json]
    rax-glance-devstack demo
    rax-glance-devstack down
"""

import argparse
import json
import os
import sys

from rax_glance import cmd
from rax_glance.devstack import demo
from rax_glance.devstack import stack


def _parser():
    parser = argparse.ArgumentParser(prog='rax-glance-devstack', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--state-dir', default=os.environ.get('RAX_GLANCE_DEVSTACK_DIR',
                                                              stack.DEFAULT_STATE_DIR),
                        help='where all state, configs and logs live (default: %(default)s; '
                             'env RAX_GLANCE_DEVSTACK_DIR)')
    sub = parser.add_subparsers(dest='command', required=True)
    up = sub.add_parser('up', help='start Swift and glance-api and wait until ready')
    up.add_argument('--db', choices=stack.DB_KINDS, default='sqlite',
                    help='Glance database (postgresql runs a private cluster)')
    up.add_argument('--auth', choices=stack.AUTH_KINDS, default='trusted-headers',
                    help='identity: trusted-headers (default; request headers, tempauth '
                         'Swift) or keystone (a real Keystone 30: glance-api in the keystone '
                         'paste flavor, Swift behind authtoken + keystoneauth; `status --json` '
                         'lists each persona\'s credentials)')
    up.add_argument('--glance-workers', type=int, default=2)
    up.add_argument('--conductors', type=int, default=0,
                    help='0 (default): tasks run in-process in glance-api; N > 0: start '
                         'Redis and N rax-glance-conductor processes and run tasks on the '
                         'TaskFlow jobboard')
    up.add_argument('--claim-expiry', type=float, default=10.0,
                    help='seconds before a dead conductor\'s jobs move to another one')
    up.add_argument('--conductor-jobs', type=int, default=2,
                    help='jobs each conductor runs at once (nonblocking conductors)')
    up.add_argument('--timeout', type=float, default=90.0,
                    help='seconds to wait for each server to be ready')
    sub.add_parser('down', help='stop the stack started from this state dir (idempotent)')
    status = sub.add_parser('status', help='describe the stack')
    status.add_argument('--json', action='store_true', help='machine-readable output')
    sub.add_parser('demo', help='exercise a running stack and print how to use it')
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    dev = stack.DevStack(args.state_dir)
    try:
        if args.command == 'up':
            if args.conductors < 0:
                raise stack.StackError('--conductors must be 0 or more')
            info = dev.up(db=args.db, glance_workers=args.glance_workers,
                          timeout=args.timeout, conductors=args.conductors,
                          claim_expiry=args.claim_expiry,
                          conductor_jobs=args.conductor_jobs, auth=args.auth)
            print('dev stack running: glance-api %s, swift %s (state dir %s)'
                  % (info['glance']['endpoint'],
                     info['swift'].get('proxy_url', info['swift']['auth_url']),
                     info['state_dir']))
            if info.get('keystone'):
                print('keystone %s: personas and passwords in `rax-glance-devstack status '
                      '--json` (keystone.personas)' % info['keystone']['auth_url'])
        elif args.command == 'down':
            was_up = dev.down()
            print('dev stack stopped' if was_up else 'no dev stack running from %s'
                  % dev.state_dir)
        elif args.command == 'status':
            info = dev.describe()
            if args.json:
                print(json.dumps(info, indent=2, sort_keys=True))
            else:
                print('status: %s (state dir %s)' % (info['status'], info['state_dir']))
                for name, pid in info.get('pids', {}).items():
                    print('  %-16s pid %-7s %s' % (name, pid,
                                                  'up' if info['alive'][name] else 'DOWN'))
            return 0 if info['status'] == 'running' else 3
        elif args.command == 'demo':
            info = dev.describe()
            if info['status'] != 'running':
                print('no running dev stack in %s (status %s); start it with '
                      '`rax-glance-devstack up`' % (info['state_dir'], info['status']),
                      file=sys.stderr)
                return 1
            if info.get('auth') == 'keystone':
                print('the demo uses trusted headers and tempauth; this stack runs Keystone '
                      '(tokens and personas: `rax-glance-devstack status --json`, '
                      'tests/functional/test_keystone_stack.py shows their use)',
                      file=sys.stderr)
                return 1
            demo.run(info, sys.stdout)
    except stack.StackError as exc:
        print('rax-glance-devstack: error: %s' % exc, file=sys.stderr)
        return 1
    except BrokenPipeError:
        return cmd.closed_pipe_exit()
    return 0


if __name__ == '__main__':
    sys.exit(main())
