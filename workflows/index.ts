// The workflows the worker registers.
export { migration } from './migration';
