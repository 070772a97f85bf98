// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title SecAgg reward token
/// @notice Plain OpenZeppelin ERC-20 whose only addition is a minter role. The ledger that
///         creates it holds MINTER_ROLE, so rewards are minted exactly when the ledger's
///         round rules allow; nobody else can mint. No burn, no pause, no upgrade path.
/// @dev Nothing of ERC-20 or AccessControl is re-implemented here: both come from
///      OpenZeppelin Contracts 5.x unchanged.
contract SecAggRewardToken is ERC20, AccessControl {
    /// @notice Role allowed to mint; granted to the ledger at construction.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @param admin Consortium admin: may grant or revoke MINTER_ROLE later.
    /// @param minter Initial minter, normally the SecAggLedger creating this token.
    constructor(address admin, address minter) ERC20("SecAgg Reward", "SAR") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, minter);
    }

    /// @notice Mint `amount` to `to`; only MINTER_ROLE.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
