import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Workflow code runs in Temporal's deterministic sandbox: it may import only the workflow SDK,
// pure domain code and types. Anything else (node:*, adapters, activities' implementations, I/O
// libraries) is a lint error here, and the workflow bundle built in CI fails on it too.
const workflowImportRules = {
  'no-restricted-imports': 'off',
  '@typescript-eslint/no-restricted-imports': [
    'error',
    {
      patterns: [
        {
          regex: '^(?!@temporalio/workflow$|@temporalio/common$|\\./|\\.\\./domain/)',
          allowTypeImports: true,
          message:
            'src/workflows may import values only from @temporalio/workflow, @temporalio/common, src/workflows and pure domain code (src/domain); anything else only as types.',
        },
      ],
    },
  ],
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  { files: ['src/workflows/**/*.ts'], rules: workflowImportRules },
  // CommonJS on purpose (Temporal require()s a failure converter by path): see the file.
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', exports: 'writable', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
