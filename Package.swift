// swift-tools-version:6.0
import PackageDescription

// Kernels are hot loops over unsafe pointers: bounds are checked at the API edge, not per element.
// AVX2 + FMA (x86-64-v3, every x86 server since 2013/2017): without them SIMD8 is split in two and
// `addingProduct` becomes a call to a software fmaf per lane (our Swift GEMM ran 0.7 vs 41 GFLOP/s).
let fast: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    .unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]),
]

// Code that parses files and talks to users keeps Swift's checks (-O): -Ounchecked miscompiled
// safetensors loading of large files (a retain of a tensor offset as if it were an object).
let checked: [SwiftSetting] = [
    .unsafeFlags(["-wmo"], .when(configuration: .release)),
    .unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"]),
]

let package = Package(
    name: "SmolTrain",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "smol", targets: ["smol"]),
        .library(name: "SmolTrainer", targets: ["SmolTrainer"]),
        .library(name: "SmolModel", targets: ["SmolModel"]),
        .library(name: "SmolHub", targets: ["SmolHub"]),
        .library(name: "SmolWeights", targets: ["SmolWeights"]),
        .library(name: "SmolEval", targets: ["SmolEval"]),
        .library(name: "SmolRuns", targets: ["SmolRuns"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "SmolMPI", dependencies: ["CMPI", "SmolTensor"], swiftSettings: fast),
        // Our own kernels in C, for instructions Swift's SIMD types do not reach (AVX512-BF16); each
        // function carries its target attribute and is called only where the CPU reports it.
        .target(name: "SmolKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "SmolTensor", dependencies: ["CBLAS", "SmolKernels"], swiftSettings: fast),
        .target(name: "SmolFormats", dependencies: ["SmolTensor"], swiftSettings: checked),
        .target(name: "SmolModel", dependencies: ["SmolTensor", "SmolKernels"], swiftSettings: fast),
        .target(name: "SmolData", dependencies: ["SmolTensor", "SmolModel", "SmolTokenizer", "SmolJinja", "CZlib", "CZstd", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: fast),
        .target(name: "SmolTokenizer", dependencies: ["SmolFormats"], swiftSettings: fast),
        .target(name: "SmolInfra", dependencies: ["SmolTensor", "SmolModel", "SmolMPI"], swiftSettings: fast),
        // The weights layer under training and inference: HF config, readers, the one HF writer.
        .target(name: "SmolWeights", dependencies: ["SmolTensor", "SmolModel", "SmolFormats", "SmolTokenizer"], swiftSettings: checked),
        .target(name: "SmolTrainer",
                dependencies: ["SmolTensor", "SmolModel", "SmolData", "SmolFormats", "SmolTokenizer", "SmolWeights", "Yams"],
                swiftSettings: fast),
        .target(name: "SmolHub", dependencies: ["SmolTensor", "SmolModel", "SmolFormats", "SmolTokenizer", "SmolWeights", "SmolJinja", "SmolData"],
                swiftSettings: fast),
        .target(name: "SmolJinja", swiftSettings: checked),
        .target(name: "SmolAPI", swiftSettings: checked),
        .target(name: "SmolDashboard",
                dependencies: ["SmolRuns", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log")],
                swiftSettings: checked),
        .target(name: "SmolRuns", dependencies: ["SmolTrainer", "SmolModel", .product(name: "GRDB", package: "GRDB.swift")], swiftSettings: checked),
        .target(name: "SmolServe",
                dependencies: ["SmolHub", "SmolWeights", "SmolJinja", "SmolAPI", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "Logging", package: "swift-log")],
                swiftSettings: checked),
        .target(name: "SmolEval",
                dependencies: ["SmolHub", "SmolWeights", "SmolTrainer", "SmolModel", "SmolJinja", "SmolTensor", "SmolAPI", "Yams", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: checked),
        .executableTarget(name: "smol",
                          dependencies: ["SmolTensor", "SmolModel", "SmolData", "SmolFormats", "SmolMPI", "SmolAPI", "SmolWeights", "SmolTrainer", "SmolInfra", "SmolTokenizer", "SmolHub", "SmolJinja", "SmolEval", "SmolServe", "SmolRuns", "SmolDashboard", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: fast),
        .testTarget(name: "SmolModelTests", dependencies: ["SmolModel", "SmolTensor"]),
        .testTarget(name: "SmolTrainTests", dependencies: ["SmolTrainer", "SmolData", "SmolFormats", "SmolModel", "SmolTensor"]),
        .testTarget(name: "SmolEvalTests", dependencies: ["SmolEval"]),
        .testTarget(name: "SmolRunsTests", dependencies: ["SmolRuns"]),
        .testTarget(name: "SmolInfraTests", dependencies: ["SmolInfra", "SmolTrainer", "SmolModel"]),
    ],
    swiftLanguageModes: [.v5]
)
