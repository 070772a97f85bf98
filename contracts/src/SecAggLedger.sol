// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SecAggRewardToken} from "./SecAggRewardToken.sol";

/// @title SecAgg ledger: the public bulletin board and audit trail of federated rounds
/// @notice One contract per consortium. The chain is the broadcast channel of secure
///         aggregation: clients read neighbours' round keys and the survivor set from here,
///         never from the aggregator, so an aggregator cannot show different clients
///         different keys or different survivor sets. Only hashes, CIDs, keys, ε and token
///         balances live on chain; blobs stay in the off-chain store.
///
///         Storage holds only what this contract checks later; everything else is in the
///         events, which are the audit trail (issue #8: gas per client and round must not
///         depend on the model and stay under 60k for a commit):
///         - per participant, one slot: registration index, role flag, cumulative ε (the
///           cap is checked against it at every commit);
///         - per round, one header slot (deadlines, phase) and a status bitmap with one
///           byte of flags per listed participant, 32 participants per slot, so opening a
///           round costs one slot per 32 participants instead of two per participant;
///         - per commit, one slot: the share Merkle root, which {verifyShare} and
///           {reportBadShare} check proofs against (a non-zero root also marks "committed").
///         Keys, blob hashes, per-round ε, model/config hashes, revealed-share blob hashes
///         and the aggregate CID/hash are emitted, not stored.
///
///         Conventions (the Python client in secagg/ledger follows them):
///         - Deadlines are block timestamps (seconds). Wall-clock schedules are what
///           operators plan with, and every node (eth-tester, anvil, geth, besu) can move
///           time in tests. A block producer can skew timestamps by a few seconds, so
///           deadlines must leave margins far larger than that.
///         - ε is fixed point: ε × EPSILON_SCALE (1e6) as uint64, always the participant's
///           CUMULATIVE spend. EPSILON_CAP = type(uint64).max disables the cap.
///         - Round ids strictly increase, so an old round's id cannot be reopened.
///           Transactions are bound to one chain by their EIP-155 signatures; everything
///           hashed off chain and checked here (the share leaves) includes block.chainid
///           and this contract's address, so it cannot be replayed on another chain or
///           another ledger either.
/// @dev Round phases: Open (key adverts and commits, until commitDeadline) → Unmasking
///      (survivor set posted; survivors post revealed shares, or under HE participants
///      attest the ciphertext sum's digest, until unmaskDeadline) →
///      Aggregated (aggregate posted; included participants claim rewards).
contract SecAggLedger is AccessControl {
    // ----------------------------------------------------------------------------------
    // Roles and constants
    // ----------------------------------------------------------------------------------

    /// @notice May open rounds, post survivor sets and aggregates, report bad shares.
    bytes32 public constant AGGREGATOR_ROLE = keccak256("AGGREGATOR_ROLE");
    /// @notice Registered data holders; granted only through {register}.
    bytes32 public constant PARTICIPANT_ROLE = keccak256("PARTICIPANT_ROLE");
    /// @notice May penalize and report bad shares (step 7 of a round: model attestation).
    bytes32 public constant VALIDATOR_ROLE = keccak256("VALIDATOR_ROLE");
    /// @notice Fixed-point scale of every ε on this contract.
    uint64 public constant EPSILON_SCALE = 1e6;

    /// @notice Largest cumulative ε (fixed point) any participant may commit.
    uint64 public immutable EPSILON_CAP;
    /// @notice Tokens minted per claimed round (in the token's smallest unit).
    uint256 public immutable REWARD_PER_ROUND;
    /// @notice The reward token; this ledger is its minter.
    SecAggRewardToken public immutable REWARD_TOKEN;

    // Status flags of one participant in one round: one byte of the round's bitmap.
    uint256 private constant IN_ROUND = 1;
    uint256 private constant ADVERTISED = 2;
    uint256 private constant SURVIVOR = 4;
    uint256 private constant DROPPED = 8;
    uint256 private constant SHARES_POSTED = 16;
    uint256 private constant INCLUDED = 32;
    uint256 private constant REWARD_CLAIMED = 64;
    uint256 private constant SUM_ATTESTED = 128;
    /// @dev What a commit without shares (HE modes: zero root) stores, so that a non-zero
    ///      slot always means "committed". No proof reaches it: {verifyShare} refuses it.
    bytes32 private constant NO_SHARES = bytes32(uint256(1));
    /// @dev 0x0101...01: the IN_ROUND bit of all 32 participants of a bitmap word.
    uint256 private constant LOW_BIT_OF_EACH_BYTE = type(uint256).max / 0xff;

    // ----------------------------------------------------------------------------------
    // State
    // ----------------------------------------------------------------------------------

    /// @notice Lifecycle of a round; `None` means never opened.
    enum Phase {
        None,
        Open,
        Unmasking,
        Aggregated
    }

    /// @dev The stored header of one round: one slot. The bitmap words firstWord..lastWord
    ///      hold the flags of every listed participant.
    struct Round {
        uint64 commitDeadline;
        uint64 unmaskDeadline;
        uint32 firstWord;
        uint32 lastWord;
        Phase phase;
    }

    /// @dev A registered participant: one slot, read (and for commits rewritten) by every
    ///      participant call, so the role check and the ε cap cost one storage access.
    struct Account {
        bool registered;
        bool active; // holds PARTICIPANT_ROLE (cleared by revokeRole / renounceRole)
        uint32 index; // registration order; position in every round bitmap
        uint64 epsilonSpent; // cumulative ε last committed (fixed point)
    }

    /// @notice A round as the contract knows it (counts derived from the bitmap).
    struct RoundView {
        uint64 commitDeadline;
        uint64 unmaskDeadline;
        Phase phase;
        uint32 participantCount;
        uint32 activeCount; // advertised keys or committed: what the survivor set partitions
        uint32 committedCount;
    }

    /// @notice What the contract recorded of one participant in one round. Keys, blob
    ///         hashes and the per-round ε are in the events (KeysAdvertised, Committed...).
    struct MemberView {
        bytes32 shareRoot; // zero when not committed or committed without shares
        bool inRound;
        bool advertised;
        bool committed;
        bool survivor;
        bool dropped;
        bool sharesPosted;
        bool included;
        bool rewardClaimed;
    }

    /// @notice Highest round id opened so far (0: none).
    uint64 public lastRoundId;
    /// @notice Ed25519 identity key of each registered participant.
    mapping(address participant => bytes32 key) public identityKey;
    /// @notice Penalty not yet settled; netted against future rewards.
    mapping(address participant => uint256 amount) public penaltyOutstanding;
    /// @notice Number of bad-share reports recorded against each holder.
    mapping(address holder => uint32 count) public badShareReports;

    mapping(address participant => Account) private _accounts;
    address[] private _accountAt;
    mapping(uint64 roundId => Round) private _rounds;
    mapping(uint64 roundId => mapping(uint256 word => uint256 flags)) private _flags;
    mapping(uint64 roundId => mapping(uint32 index => bytes32 root)) private _shareRoots;
    mapping(uint64 roundId => mapping(address owner => mapping(address holder => bool)))
        private _reported;

    // ----------------------------------------------------------------------------------
    // Events: the audit trail
    // ----------------------------------------------------------------------------------

    event ParticipantRegistered(address indexed participant, bytes32 ed25519Key, uint32 index);
    event RoundOpened(
        uint64 indexed roundId,
        bytes32 modelHash,
        bytes32 configHash,
        uint64 commitDeadline,
        uint64 unmaskDeadline,
        address[] participants
    );
    event KeysAdvertised(
        uint64 indexed roundId,
        address indexed participant,
        bytes32 encryptionKey,
        bytes32 maskingKey,
        bytes32 seedCommitment
    );
    event Committed(
        uint64 indexed roundId,
        address indexed participant,
        bytes32 blobHash,
        bytes32 shareRoot,
        uint64 cumulativeEpsilon
    );
    event SurvivorsPosted(uint64 indexed roundId, address[] survivors, address[] dropped);
    event SharesPosted(uint64 indexed roundId, address indexed holder, bytes32 sharesBlobHash);
    event BadShareReported(
        uint64 indexed roundId,
        address indexed owner,
        address indexed holder,
        bytes32 leaf,
        address reporter
    );
    event SumAttested(uint64 indexed roundId, address indexed participant, bytes32 sumDigest);
    event AggregatePosted(
        uint64 indexed roundId, bytes32 aggregateCid, bytes32 aggregateHash, address[] included
    );
    event RewardClaimed(
        uint64 indexed roundId, address indexed participant, uint256 minted, uint256 penaltySettled
    );
    event Penalized(address indexed participant, uint256 amount, address indexed by);

    // ----------------------------------------------------------------------------------
    // Errors (the Python client maps each name to a LedgerError subclass)
    // ----------------------------------------------------------------------------------

    error InvalidIdentityKey(address participant);
    error AlreadyRegistered(address participant);
    error NotRegistered(address participant);
    error RoundIdNotIncreasing(uint64 roundId, uint64 lastRoundId);
    error InvalidDeadlines(uint64 commitDeadline, uint64 unmaskDeadline, uint64 blockTimestamp);
    error EmptyParticipantList();
    error DuplicateParticipant(address participant);
    error UnknownRound(uint64 roundId);
    error WrongPhase(uint64 roundId, Phase expected, Phase actual);
    error NotInRound(uint64 roundId, address participant);
    error DeadlinePassed(uint64 roundId, uint64 deadline, uint64 blockTimestamp);
    error KeysAlreadyAdvertised(uint64 roundId, address participant);
    error KeysAfterCommit(uint64 roundId, address participant);
    error AlreadyCommitted(uint64 roundId, address participant);
    error EpsilonCapExceeded(address participant, uint64 cumulativeEpsilon, uint64 cap);
    error EpsilonDecreased(address participant, uint64 cumulativeEpsilon, uint64 recorded);
    error CommitPhaseNotOver(uint64 roundId, uint64 commitDeadline, address waitingFor);
    error NotAPartition(uint64 roundId, address offender);
    error NotASurvivor(uint64 roundId, address participant);
    error SharesAlreadyPosted(uint64 roundId, address holder);
    error SharesNotPosted(uint64 roundId, address holder);
    error NoShareRoot(uint64 roundId, address owner);
    error ShareProofValid(uint64 roundId, address owner, address holder);
    error AlreadyReported(uint64 roundId, address owner, address holder);
    error SumAlreadyAttested(uint64 roundId, address participant);
    error NotIncluded(uint64 roundId, address participant);
    error RewardAlreadyClaimed(uint64 roundId, address participant);
    error ZeroPenalty();
    error UseRegister(address account);

    // ----------------------------------------------------------------------------------
    // Setup
    // ----------------------------------------------------------------------------------

    /// @param admin Consortium owner (DEFAULT_ADMIN_ROLE); grants AGGREGATOR/VALIDATOR roles
    ///        with AccessControl.grantRole and registers participants.
    /// @param epsilonCap Per-participant cap on cumulative ε, fixed point (ε × 1e6).
    /// @param rewardPerRound Tokens minted to each included participant per round.
    /// @dev The reward token is created here so that the ledger is provably its minter.
    constructor(address admin, uint64 epsilonCap, uint256 rewardPerRound) {
        EPSILON_CAP = epsilonCap;
        REWARD_PER_ROUND = rewardPerRound;
        REWARD_TOKEN = new SecAggRewardToken(admin, address(this));
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Register a data holder with its long-term Ed25519 identity key; this grants
    ///         PARTICIPANT_ROLE and assigns the next registration index.
    /// @dev Identity keys never change here: rotating one means a new address. The role
    ///      lives in the participant's account slot (see {hasRole}), so that every
    ///      participant call checks role, index and ε with a single storage read; the
    ///      standard RoleGranted event is still emitted.
    function register(address participant, bytes32 ed25519Key)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (ed25519Key == bytes32(0) || participant == address(0)) {
            revert InvalidIdentityKey(participant);
        }
        if (identityKey[participant] != bytes32(0)) revert AlreadyRegistered(participant);
        identityKey[participant] = ed25519Key;
        uint32 index = uint32(_accountAt.length);
        _accountAt.push(participant);
        _accounts[participant] =
            Account({registered: true, active: true, index: index, epsilonSpent: 0});
        emit RoleGranted(PARTICIPANT_ROLE, participant, msg.sender);
        emit ParticipantRegistered(participant, ed25519Key, index);
    }

    /// @notice AccessControl's grantRole, except that PARTICIPANT_ROLE comes only with an
    ///         identity key, through {register}.
    function grantRole(bytes32 role, address account) public override {
        if (role == PARTICIPANT_ROLE) revert UseRegister(account);
        super.grantRole(role, account);
    }

    /// @notice AccessControl's hasRole; PARTICIPANT_ROLE is read from the account slot.
    function hasRole(bytes32 role, address account) public view override returns (bool) {
        if (role == PARTICIPANT_ROLE) return _accounts[account].active;
        return super.hasRole(role, account);
    }

    /// @dev PARTICIPANT_ROLE is never stored in AccessControl's tables (see {register}).
    function _grantRole(bytes32 role, address account) internal override returns (bool) {
        if (role == PARTICIPANT_ROLE) revert UseRegister(account);
        return super._grantRole(role, account);
    }

    /// @dev Revoking (or renouncing) PARTICIPANT_ROLE clears the account's role flag; the
    ///      identity key stays, so the address cannot register again.
    function _revokeRole(bytes32 role, address account) internal override returns (bool) {
        if (role != PARTICIPANT_ROLE) return super._revokeRole(role, account);
        Account storage a = _accounts[account];
        if (!a.active) return false;
        a.active = false;
        emit RoleRevoked(role, account, _msgSender());
        return true;
    }

    // ----------------------------------------------------------------------------------
    // One round
    // ----------------------------------------------------------------------------------

    /// @notice Open round `roundId` for `participants` (all registered, no duplicates).
    /// @param roundId Must exceed every round id opened before (replay protection).
    /// @param modelHash Hash of the global model the round starts from (clients check it
    ///        against the RoundOpened event).
    /// @param configHash Hash of the run configuration (event only).
    /// @param commitDeadline Last block timestamp for key adverts and commits.
    /// @param unmaskDeadline Last block timestamp for revealed shares; > commitDeadline.
    /// @dev Membership is one bit per participant in the round's bitmap; the list itself is
    ///      in the RoundOpened event (and {roundParticipants} rebuilds it from the bitmap).
    function openRound(
        uint64 roundId,
        bytes32 modelHash,
        bytes32 configHash,
        uint64 commitDeadline,
        uint64 unmaskDeadline,
        address[] calldata participants
    ) external onlyRole(AGGREGATOR_ROLE) {
        if (roundId <= lastRoundId) revert RoundIdNotIncreasing(roundId, lastRoundId);
        if (commitDeadline <= block.timestamp || unmaskDeadline <= commitDeadline) {
            revert InvalidDeadlines(commitDeadline, unmaskDeadline, uint64(block.timestamp));
        }
        if (participants.length == 0) revert EmptyParticipantList();
        mapping(uint256 => uint256) storage flags = _flags[roundId];
        uint256 first = type(uint256).max;
        uint256 last = 0;
        uint256 cachedWord = type(uint256).max; // word index held in `bits`, not yet stored
        uint256 bits = 0;
        for (uint256 i = 0; i < participants.length; ++i) {
            address p = participants[i];
            Account memory a = _accounts[p];
            if (!a.active) revert NotRegistered(p);
            uint256 word = a.index >> 5;
            if (word != cachedWord) {
                if (cachedWord != type(uint256).max) flags[cachedWord] = bits;
                cachedWord = word;
                bits = flags[word];
                if (word < first) first = word;
                if (word > last) last = word;
            }
            uint256 bit = IN_ROUND << ((a.index & 31) << 3);
            if (bits & bit != 0) revert DuplicateParticipant(p);
            bits |= bit;
        }
        flags[cachedWord] = bits;
        lastRoundId = roundId;
        _rounds[roundId] = Round({
            commitDeadline: commitDeadline,
            unmaskDeadline: unmaskDeadline,
            firstWord: uint32(first),
            lastWord: uint32(last),
            phase: Phase.Open
        });
        emit RoundOpened(roundId, modelHash, configHash, commitDeadline, unmaskDeadline, participants);
    }

    /// @notice Publish this round's X25519 public keys and the commitment H(b_u), once,
    ///         before committing.
    /// @dev The keys are in the KeysAdvertised event only (the contract never uses them);
    ///      storage keeps the "advertised" flag, which the survivor partition needs.
    ///      Neighbours read the keys from the chain's events, never from the aggregator.
    ///      Not required before {commit} (HE modes have no keys), but refused after it:
    ///      the masked input and the share tree were made with the keys known at commit.
    function advertiseKeys(
        uint64 roundId,
        bytes32 encryptionKey,
        bytes32 maskingKey,
        bytes32 seedCommitment
    ) external {
        Account memory a = _participant();
        _openForCommits(roundId);
        (uint256 word, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        uint256 f = bits >> shift;
        if (f & IN_ROUND == 0) revert NotInRound(roundId, msg.sender);
        if (f & ADVERTISED != 0) revert KeysAlreadyAdvertised(roundId, msg.sender);
        if (_shareRoots[roundId][a.index] != 0) revert KeysAfterCommit(roundId, msg.sender);
        _flags[roundId][word] = bits | (ADVERTISED << shift);
        emit KeysAdvertised(roundId, msg.sender, encryptionKey, maskingKey, seedCommitment);
    }

    /// @notice Commit the protected update once, with the cumulative ε it brings the caller to.
    /// @param blobHash Hash of the masked-input / ciphertext blob in the store (event only).
    /// @param shareRoot Merkle root (see {shareLeaf}) of the shares the caller handed out;
    ///        zero when there are none (HE modes). Stored: {verifyShare} checks against it.
    /// @param cumulativeEpsilon Caller's total ε after this round (fixed point); must lie in
    ///        [recorded ε, EPSILON_CAP]. Stored per participant (the cap needs the latest
    ///        value only); the per-round value is in the Committed event.
    /// @dev Steady-state cost: one fresh slot (the root) and one rewritten slot (the account).
    function commit(uint64 roundId, bytes32 blobHash, bytes32 shareRoot, uint64 cumulativeEpsilon)
        external
    {
        Account storage account = _accounts[msg.sender];
        Account memory a = account;
        if (!a.active) revert AccessControlUnauthorizedAccount(msg.sender, PARTICIPANT_ROLE);
        _openForCommits(roundId);
        (, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        if ((bits >> shift) & IN_ROUND == 0) revert NotInRound(roundId, msg.sender);
        mapping(uint32 => bytes32) storage roots = _shareRoots[roundId];
        if (roots[a.index] != 0) revert AlreadyCommitted(roundId, msg.sender);
        if (cumulativeEpsilon > EPSILON_CAP) {
            revert EpsilonCapExceeded(msg.sender, cumulativeEpsilon, EPSILON_CAP);
        }
        if (cumulativeEpsilon < a.epsilonSpent) {
            revert EpsilonDecreased(msg.sender, cumulativeEpsilon, a.epsilonSpent);
        }
        roots[a.index] = shareRoot == 0 ? NO_SHARES : shareRoot;
        account.epsilonSpent = cumulativeEpsilon;
        emit Committed(roundId, msg.sender, blobHash, shareRoot, cumulativeEpsilon);
    }

    /// @notice Post who survived (committed and summed) and who dropped; closes commits.
    /// @dev Allowed once every listed participant committed, or after the commit deadline.
    ///      `survivors` ∪ `dropped` must be exactly the active participants (those that
    ///      advertised keys or committed), disjoint, and every survivor must have committed.
    ///      Without key adverts (HE modes) this is a partition of the committed participants;
    ///      with them it also names the clients that shared keys but never committed, whose
    ///      pairwise masks the holders must help remove. The offender named in NotAPartition
    ///      is the first listed address that breaks the rule, or else the first active
    ///      participant left out.
    function postSurvivors(uint64 roundId, address[] calldata survivors, address[] calldata dropped)
        external
        onlyRole(AGGREGATOR_ROLE)
    {
        Round storage r = _roundIn(roundId, Phase.Open);
        Round memory header = r;
        if (block.timestamp <= header.commitDeadline) _requireAllCommitted(roundId, header);
        for (uint256 i = 0; i < survivors.length; ++i) _markListed(roundId, survivors[i], SURVIVOR);
        for (uint256 i = 0; i < dropped.length; ++i) _markListed(roundId, dropped[i], DROPPED);
        _requireActiveListed(roundId, header);
        r.phase = Phase.Unmasking;
        emit SurvivorsPosted(roundId, survivors, dropped);
    }

    /// @notice A survivor publishes the hash of its revealed-shares blob, once, before the
    ///         unmask deadline (event only: the contract never reads it back).
    function postShares(uint64 roundId, bytes32 sharesBlobHash) external {
        Account memory a = _participant();
        Round memory r = _roundIn(roundId, Phase.Unmasking);
        if (block.timestamp > r.unmaskDeadline) {
            revert DeadlinePassed(roundId, r.unmaskDeadline, uint64(block.timestamp));
        }
        (uint256 word, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        uint256 f = bits >> shift;
        if (f & SURVIVOR == 0) revert NotASurvivor(roundId, msg.sender);
        if (f & SHARES_POSTED != 0) revert SharesAlreadyPosted(roundId, msg.sender);
        _flags[roundId][word] = bits | (SHARES_POSTED << shift);
        emit SharesPosted(roundId, msg.sender, sharesBlobHash);
    }

    /// @notice Attest, once per round, that `sumDigest` is the SHA-256 digest of the sum of
    ///         the ciphertexts the round's survivors committed (HE modes).
    /// @dev The HE key holder decrypts a sum only when enough participants attested its
    ///      digest from their own accounts: it never sees the ciphertexts, and the
    ///      aggregator, who holds the public key, could otherwise pass one client's
    ///      ciphertext plus encryptions of zero as a sum. Each attester added up the
    ///      survivors' committed ciphertexts itself (the Committed events name them, the
    ///      store holds them); the survivor set it refers to is the one posted, which
    ///      cannot change. The digest is in the SumAttested event only; the flag in the
    ///      round bitmap makes a second attestation fail.
    function attestSum(uint64 roundId, bytes32 sumDigest) external {
        Account memory a = _participant();
        Round memory r = _roundIn(roundId, Phase.Unmasking);
        if (block.timestamp > r.unmaskDeadline) {
            revert DeadlinePassed(roundId, r.unmaskDeadline, uint64(block.timestamp));
        }
        (uint256 word, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        uint256 f = bits >> shift;
        if (f & IN_ROUND == 0) revert NotInRound(roundId, msg.sender);
        if (f & SUM_ATTESTED != 0) revert SumAlreadyAttested(roundId, msg.sender);
        _flags[roundId][word] = bits | (SUM_ATTESTED << shift);
        emit SumAttested(roundId, msg.sender, sumDigest);
    }

    /// @notice Post the aggregate's CID and hash and the participants it includes, once.
    /// @dev `included` must be distinct survivors; they are the ones who may claim rewards.
    ///      CID and hash are in the AggregatePosted event (nothing here checks them later).
    function postAggregate(
        uint64 roundId,
        bytes32 aggregateCid,
        bytes32 aggregateHash,
        address[] calldata included
    ) external onlyRole(AGGREGATOR_ROLE) {
        Round storage r = _roundIn(roundId, Phase.Unmasking);
        for (uint256 i = 0; i < included.length; ++i) {
            (bool listed,, uint256 word, uint256 shift, uint256 bits) =
                _memberSlot(roundId, included[i]);
            uint256 f = bits >> shift;
            if (!listed || f & SURVIVOR == 0 || f & INCLUDED != 0) {
                revert NotASurvivor(roundId, included[i]);
            }
            _flags[roundId][word] = bits | (INCLUDED << shift);
        }
        r.phase = Phase.Aggregated;
        emit AggregatePosted(roundId, aggregateCid, aggregateHash, included);
    }

    // ----------------------------------------------------------------------------------
    // Share commitments
    // ----------------------------------------------------------------------------------

    /// @notice Leaf of an owner's share tree for one holder, as OpenZeppelin's
    ///         StandardMerkleTree hashes it: keccak256(bytes.concat(keccak256(abi.encode(
    ///         chainid, ledger, roundId, owner, holder, bShareHash, sShareHash)))).
    /// @dev Binding chain id and ledger address stops a tree from being replayed elsewhere;
    ///      double hashing keeps 64-byte leaf preimages from posing as inner nodes.
    function shareLeaf(
        uint64 roundId,
        address owner,
        address holder,
        bytes32 bShareHash,
        bytes32 sShareHash
    ) public view returns (bytes32) {
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        block.chainid, address(this), roundId, owner, holder, bShareHash, sShareHash
                    )
                )
            )
        );
    }

    /// @notice True when `leaf` is in the share tree `owner` committed in `roundId`.
    function verifyShare(uint64 roundId, address owner, bytes32 leaf, bytes32[] calldata proof)
        public
        view
        returns (bool)
    {
        bytes32 root = _shareRootOf(roundId, owner);
        if (root == 0) return false;
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice Record evidence that `holder` revealed a share of `owner` that is not in the
    ///         owner's committed tree (the proof must FAIL; a valid one is refused).
    /// @dev Callable by the aggregator or a validator. The holder's revealed-shares blob is
    ///      named by its SharesPosted event, so an auditor can re-check the claim from the
    ///      store. The holder is blamed because it could check each share it received
    ///      against the owner's root (with the proof sent alongside) and refuse a bad one
    ///      at once. Evidence only: penalties go through {penalize}.
    function reportBadShare(
        uint64 roundId,
        address owner,
        address holder,
        bytes32 bShareHash,
        bytes32 sShareHash,
        bytes32[] calldata proof
    ) external {
        if (!hasRole(AGGREGATOR_ROLE, msg.sender) && !hasRole(VALIDATOR_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, VALIDATOR_ROLE);
        }
        if (_rounds[roundId].phase == Phase.None) revert UnknownRound(roundId);
        if (_shareRootOf(roundId, owner) == 0) revert NoShareRoot(roundId, owner);
        if (_flagsOf(roundId, holder) & SHARES_POSTED == 0) revert SharesNotPosted(roundId, holder);
        bytes32 leaf = shareLeaf(roundId, owner, holder, bShareHash, sShareHash);
        if (verifyShare(roundId, owner, leaf, proof)) {
            revert ShareProofValid(roundId, owner, holder);
        }
        if (_reported[roundId][owner][holder]) revert AlreadyReported(roundId, owner, holder);
        _reported[roundId][owner][holder] = true;
        badShareReports[holder] += 1;
        emit BadShareReported(roundId, owner, holder, leaf, msg.sender);
    }

    // ----------------------------------------------------------------------------------
    // Rewards and penalties
    // ----------------------------------------------------------------------------------

    /// @notice Mint this round's reward to the caller if the aggregate included it; once.
    /// @dev Outstanding penalty is settled first: the minted amount is the reward minus
    ///      what is owed (never below zero); the rest of the debt stays recorded.
    function claimReward(uint64 roundId) external returns (uint256 minted) {
        _roundIn(roundId, Phase.Aggregated);
        Account memory a = _accounts[msg.sender];
        if (!a.registered) revert NotIncluded(roundId, msg.sender);
        (uint256 word, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        uint256 f = bits >> shift;
        if (f & INCLUDED == 0) revert NotIncluded(roundId, msg.sender);
        if (f & REWARD_CLAIMED != 0) revert RewardAlreadyClaimed(roundId, msg.sender);
        _flags[roundId][word] = bits | (REWARD_CLAIMED << shift);
        uint256 owed = penaltyOutstanding[msg.sender];
        uint256 settled = owed < REWARD_PER_ROUND ? owed : REWARD_PER_ROUND;
        if (settled > 0) penaltyOutstanding[msg.sender] = owed - settled;
        minted = REWARD_PER_ROUND - settled;
        if (minted > 0) REWARD_TOKEN.mint(msg.sender, minted);
        emit RewardClaimed(roundId, msg.sender, minted, settled);
    }

    /// @notice Record a penalty against `participant` (admin or validator).
    /// @dev No stake is held: a penalty is a debt deducted from the participant's future
    ///      rewards (see {claimReward}). Tokens already paid out are never confiscated.
    function penalize(address participant, uint256 amount) external {
        if (!hasRole(DEFAULT_ADMIN_ROLE, msg.sender) && !hasRole(VALIDATOR_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, VALIDATOR_ROLE);
        }
        if (amount == 0) revert ZeroPenalty();
        penaltyOutstanding[participant] += amount;
        emit Penalized(participant, amount, msg.sender);
    }

    // ----------------------------------------------------------------------------------
    // Views (they scan the round bitmap: free for eth_call, not meant for transactions)
    // ----------------------------------------------------------------------------------

    /// @notice The participant's last committed cumulative ε (fixed point).
    function epsilonSpent(address participant) external view returns (uint64) {
        return _accounts[participant].epsilonSpent;
    }

    /// @notice Number of participants ever registered (indices run 0 .. count - 1).
    function participantCount() external view returns (uint256) {
        return _accountAt.length;
    }

    /// @notice Deadlines, phase and participation counts of `roundId` (phase None if never
    ///         opened). Model/config hashes and the aggregate are in the events.
    function roundInfo(uint64 roundId) external view returns (RoundView memory info) {
        Round memory r = _rounds[roundId];
        info.commitDeadline = r.commitDeadline;
        info.unmaskDeadline = r.unmaskDeadline;
        info.phase = r.phase;
        if (r.phase == Phase.None) return info;
        for (uint256 w = r.firstWord; w <= r.lastWord; ++w) {
            uint256 bits = _flags[roundId][w];
            for (uint256 k = 0; k < 32; ++k) {
                uint256 f = bits >> (k << 3);
                if (f & IN_ROUND == 0) continue;
                bool committed = _shareRoots[roundId][uint32((w << 5) | k)] != 0;
                info.participantCount += 1;
                if (committed) info.committedCount += 1;
                if (committed || f & ADVERTISED != 0) info.activeCount += 1;
            }
        }
    }

    /// @notice The participants `roundId` was opened with, in registration order (the
    ///         RoundOpened event has them in the order the aggregator listed them).
    function roundParticipants(uint64 roundId) external view returns (address[] memory) {
        return _listed(roundId, IN_ROUND);
    }

    /// @notice What `participant` did in `roundId`, as far as the contract records it.
    function memberOf(uint64 roundId, address participant)
        external
        view
        returns (MemberView memory m)
    {
        Account memory a = _accounts[participant];
        if (!a.registered) return m;
        uint256 f = _flagsOf(roundId, participant);
        bytes32 root = _shareRoots[roundId][a.index];
        m.shareRoot = root == NO_SHARES ? bytes32(0) : root;
        m.inRound = f & IN_ROUND != 0;
        m.advertised = f & ADVERTISED != 0;
        m.committed = root != 0;
        m.survivor = f & SURVIVOR != 0;
        m.dropped = f & DROPPED != 0;
        m.sharesPosted = f & SHARES_POSTED != 0;
        m.included = f & INCLUDED != 0;
        m.rewardClaimed = f & REWARD_CLAIMED != 0;
    }

    /// @notice The posted survivor and dropped sets, in registration order (the
    ///         SurvivorsPosted event has them as posted).
    function survivorSet(uint64 roundId)
        external
        view
        returns (address[] memory survivors, address[] memory dropped)
    {
        return (_listed(roundId, SURVIVOR), _listed(roundId, DROPPED));
    }

    // ----------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------

    /// @dev The caller's account; reverts as onlyRole(PARTICIPANT_ROLE) would.
    function _participant() private view returns (Account memory a) {
        a = _accounts[msg.sender];
        if (!a.active) revert AccessControlUnauthorizedAccount(msg.sender, PARTICIPANT_ROLE);
    }

    /// @dev The round, which must be in `phase`.
    function _roundIn(uint64 roundId, Phase phase) private view returns (Round storage r) {
        r = _rounds[roundId];
        Phase actual = r.phase;
        if (actual == Phase.None) revert UnknownRound(roundId);
        if (actual != phase) revert WrongPhase(roundId, phase, actual);
    }

    /// @dev Reverts unless `roundId` is Open and before its commit deadline.
    function _openForCommits(uint64 roundId) private view {
        Round memory r = _roundIn(roundId, Phase.Open);
        if (block.timestamp > r.commitDeadline) {
            revert DeadlinePassed(roundId, r.commitDeadline, uint64(block.timestamp));
        }
    }

    /// @dev Bitmap word, bit shift and the word's current value for participant `index`.
    function _slot(uint64 roundId, uint32 index)
        private
        view
        returns (uint256 word, uint256 shift, uint256 bits)
    {
        word = index >> 5;
        shift = (uint256(index) & 31) << 3;
        bits = _flags[roundId][word];
    }

    /// @dev As {_slot} for a listed address, and whether it is in the round (unregistered
    ///      addresses never are).
    function _memberSlot(uint64 roundId, address account)
        private
        view
        returns (bool inRound, uint32 index, uint256 word, uint256 shift, uint256 bits)
    {
        Account memory a = _accounts[account];
        if (!a.registered) return (false, 0, 0, 0, 0);
        index = a.index;
        (word, shift, bits) = _slot(roundId, index);
        inRound = (bits >> shift) & IN_ROUND != 0;
    }

    /// @dev Mark `account` SURVIVOR (it must have committed) or DROPPED (it must have
    ///      advertised keys or committed); either way it must not be listed yet. The share
    ///      root is read only when the flags do not already settle the question.
    function _markListed(uint64 roundId, address account, uint256 flag) private {
        (bool listed, uint32 index, uint256 word, uint256 shift, uint256 bits) =
            _memberSlot(roundId, account);
        uint256 f = bits >> shift;
        bool allowed = listed && f & (SURVIVOR | DROPPED) == 0
            && ((flag == DROPPED && f & ADVERTISED != 0) || _shareRoots[roundId][index] != 0);
        if (!allowed) revert NotAPartition(roundId, account);
        _flags[roundId][word] = bits | (flag << shift);
    }

    /// @dev The flags byte of `account` in `roundId` (0 for unregistered addresses).
    function _flagsOf(uint64 roundId, address account) private view returns (uint256) {
        Account memory a = _accounts[account];
        if (!a.registered) return 0;
        (, uint256 shift, uint256 bits) = _slot(roundId, a.index);
        return (bits >> shift) & 0xff;
    }

    /// @dev The share root `owner` committed in `roundId`; zero if none (or no shares).
    function _shareRootOf(uint64 roundId, address owner) private view returns (bytes32 root) {
        Account memory a = _accounts[owner];
        if (!a.registered) return 0;
        root = _shareRoots[roundId][a.index];
        if (root == NO_SHARES) root = 0;
    }

    /// @dev Before the commit deadline the survivor set may be posted only if every listed
    ///      participant committed; names the first one still awaited.
    function _requireAllCommitted(uint64 roundId, Round memory r) private view {
        for (uint256 w = r.firstWord; w <= r.lastWord; ++w) {
            uint256 bits = _flags[roundId][w];
            for (uint256 k = 0; k < 32; ++k) {
                if ((bits >> (k << 3)) & IN_ROUND == 0) continue;
                uint32 index = uint32((w << 5) | k);
                if (_shareRoots[roundId][index] == 0) {
                    revert CommitPhaseNotOver(roundId, r.commitDeadline, _accountAt[index]);
                }
            }
        }
    }

    /// @dev Every active participant (advertised or committed) is a survivor or dropped.
    ///      Words whose listed participants are all marked are skipped without a loop.
    function _requireActiveListed(uint64 roundId, Round memory r) private view {
        for (uint256 w = r.firstWord; w <= r.lastWord; ++w) {
            uint256 bits = _flags[roundId][w];
            // Bit 0 of byte k set: participant k is in the round but neither survivor
            // (bit 2) nor dropped (bit 3).
            uint256 unlisted = bits & ~((bits >> 2) | (bits >> 3)) & LOW_BIT_OF_EACH_BYTE;
            for (uint256 k = 0; unlisted != 0; ++k) {
                if ((unlisted >> (k << 3)) & 1 == 0) continue;
                unlisted &= ~(uint256(1) << (k << 3));
                uint32 index = uint32((w << 5) | k);
                if ((bits >> (k << 3)) & ADVERTISED != 0 || _shareRoots[roundId][index] != 0) {
                    revert NotAPartition(roundId, _accountAt[index]);
                }
            }
        }
    }

    /// @dev Addresses of the round's participants whose flags include `flag`.
    function _listed(uint64 roundId, uint256 flag) private view returns (address[] memory out) {
        Round memory r = _rounds[roundId];
        if (r.phase == Phase.None) return out;
        uint256 count = 0;
        for (uint256 pass = 0; pass < 2; ++pass) {
            uint256 n = 0;
            for (uint256 w = r.firstWord; w <= r.lastWord; ++w) {
                uint256 bits = _flags[roundId][w];
                for (uint256 k = 0; k < 32; ++k) {
                    if ((bits >> (k << 3)) & flag == 0) continue;
                    if (pass == 1) out[n] = _accountAt[(w << 5) | k];
                    ++n;
                }
            }
            if (pass == 0) {
                count = n;
                out = new address[](count);
            }
        }
    }
}
