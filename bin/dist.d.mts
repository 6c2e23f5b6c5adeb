// Types of bin/dist.mjs, for the tests and benchmarks that use it.
export declare const DIST: string;
export declare const BUILD_STAMP: string;
export declare const SOURCE_DIRS: readonly string[];
export declare function distIsCurrent(root?: string): boolean;
export declare function registerDistResolution(): void;
export declare const canRunDist: boolean;
