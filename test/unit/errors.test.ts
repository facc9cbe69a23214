import * as fs from 'node:fs';
import * as path from 'node:path';
import { ERROR_CODES } from '../../src/errors';

describe('src/errors.ts', () => {
  const doc = fs.readFileSync(path.join(__dirname, '../../docs/errors.md'), 'utf8');
  const documented = [...doc.matchAll(/`(VXNET_ERR_[A-Z_]+)`/g)].map((m) => m[1]);
  const source = fs.readFileSync(path.join(__dirname, '../../src/errors.ts'), 'utf8');

  it('documents every code', () => {
    expect(ERROR_CODES.filter((c) => !documented.includes(c))).toEqual([]);
  });
  it('has a code for everything documented', () => {
    expect(documented.filter((c) => !(ERROR_CODES as readonly string[]).includes(c))).toEqual([]);
  });
  it('lists every code of the ErrorCode union in ERROR_CODES', () => {
    const union = source.slice(source.indexOf('export type ErrorCode'), source.indexOf(';', source.indexOf('export type ErrorCode')));
    const inUnion = [...union.matchAll(/'(VXNET_ERR_[A-Z_]+)'/g)].map((m) => m[1]);
    expect([...inUnion].sort()).toEqual([...ERROR_CODES].sort());
  });
});
